/**
 * Issue 12.10 at unit level: the login queue is fair between source addresses, bounded per
 * address, and an unknown user's decoy hash costs what the file's entries cost. (The flood over
 * real TCP connections is in login-flood.test.ts.)
 */
import { describe, expect, it } from 'vitest';
import {
  HashQueueFullError,
  hashLoad,
  MAX_CONCURRENT_HASHES,
  MAX_QUEUED_HASHES,
  MAX_QUEUED_PER_SOURCE,
  sourceKey,
  withHashSlot,
} from '../src/login-queue.ts';
import { DEFAULT_ITERATIONS, decoyHash, hashPassword, PasswordFile } from '../src/passwd.ts';

/** A job that records its start and finishes when the test says so. */
function gate(started: string[], name: string): { job: () => Promise<void>; open: () => void } {
  let open = (): void => {};
  const done = new Promise<void>((resolve) => {
    open = resolve;
  });
  return {
    job: () => {
      started.push(name);
      return done;
    },
    open: () => open(),
  };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('issue 12.10: fair admission to password hashing', () => {
  it('issue 12.10: a freed slot goes to the next address in turn, not to the flood queued first', async () => {
    const started: string[] = [];
    const gates = new Map<string, ReturnType<typeof gate>>();
    const runs: Promise<void>[] = [];
    const submit = (source: string, name: string) => {
      const g = gate(started, name);
      gates.set(name, g);
      runs.push(withHashSlot(source, g.job));
    };
    for (let i = 1; i <= 10; i++) submit('10.0.0.66', `a${i}`);
    submit('10.0.0.7', 'b1');
    await settle();
    expect(started).toEqual(['a1', 'a2']);
    expect(hashLoad()).toEqual({ running: MAX_CONCURRENT_HASHES, waiting: 9, sources: 2 });
    // Each finished hash hands its slot on: a3 (a's turn), then b1 (b's turn), then a again.
    for (const name of ['a1', 'a2', 'a3']) {
      gates.get(name)?.open();
      await settle();
    }
    expect(started.slice(0, 5)).toEqual(['a1', 'a2', 'a3', 'b1', 'a4']);
    for (const name of [...gates.keys()]) gates.get(name)?.open();
    for (let i = 0; i < 12; i++) {
      await settle();
      for (const g of gates.values()) g.open();
    }
    await Promise.all(runs);
    expect(started).toHaveLength(11);
    expect(hashLoad()).toEqual({ running: 0, waiting: 0, sources: 0 });
  });

  it('issue 12.10: one address may have MAX_QUEUED_PER_SOURCE waiting; past it, busy at once', async () => {
    const started: string[] = [];
    const opens: Array<() => void> = [];
    const runs: Promise<unknown>[] = [];
    const submit = (source: string) => {
      const g = gate(started, source);
      opens.push(g.open);
      const run = withHashSlot(source, g.job);
      runs.push(run.catch(() => {}));
      return run;
    };
    for (let i = 0; i < MAX_CONCURRENT_HASHES + MAX_QUEUED_PER_SOURCE; i++) submit('10.0.0.66');
    const over = submit('10.0.0.66');
    await expect(over).rejects.toBeInstanceOf(HashQueueFullError);
    await expect(over).rejects.toMatchObject({ scope: 'source' });
    // another address still gets a place
    const other = submit('10.0.0.7');
    expect(hashLoad().waiting).toBe(MAX_QUEUED_PER_SOURCE + 1);
    while (hashLoad().running > 0) {
      for (const open of opens) open();
      await settle();
    }
    await other;
    await Promise.all(runs);
    expect(started.filter((s) => s === '10.0.0.7')).toHaveLength(1);
    expect(hashLoad()).toEqual({ running: 0, waiting: 0, sources: 0 });
  });

  it('issue 12.10: with the whole queue full, a quiet address takes the busiest address place', async () => {
    const opens: Array<() => void> = [];
    const runs: Promise<unknown>[] = [];
    const rejected: string[] = [];
    const submit = (source: string) => {
      const g = gate([], source);
      opens.push(g.open);
      const run = withHashSlot(source, g.job);
      runs.push(
        run.catch((err: unknown) => {
          if (err instanceof HashQueueFullError) rejected.push(`${source}:${err.scope}`);
        }),
      );
    };
    for (let i = 0; i < MAX_CONCURRENT_HASHES; i++) submit('running');
    // every address but the last at its bound, the last one lighter
    let n = 0;
    for (let s = 0; n < MAX_QUEUED_HASHES; s++)
      for (let i = 0; i < MAX_QUEUED_PER_SOURCE && n < MAX_QUEUED_HASHES; i++, n++)
        submit(`10.1.${s >> 8}.${s & 255}`);
    expect(hashLoad().waiting).toBe(MAX_QUEUED_HASHES);
    submit('10.9.9.9');
    await settle();
    expect(hashLoad().waiting).toBe(MAX_QUEUED_HASHES);
    expect(rejected).toEqual(['10.1.0.0:all']);
    // an address as busy as the busiest one gets no one's place
    submit('10.1.0.1');
    await settle();
    expect(rejected).toEqual(['10.1.0.0:all', '10.1.0.1:source']);
    submit('10.1.0.0');
    await settle();
    expect(rejected).toEqual(['10.1.0.0:all', '10.1.0.1:source', '10.1.0.0:all']);
    while (hashLoad().running > 0) {
      for (const open of opens.splice(0)) open();
      await settle();
    }
    await Promise.all(runs);
    expect(hashLoad()).toEqual({ running: 0, waiting: 0, sources: 0 });
  });

  it('issue 12.10: a login whose client went away leaves the queue at once', async () => {
    const started: string[] = [];
    const opens: Array<() => void> = [];
    const runs: Promise<unknown>[] = [];
    const submit = (name: string, signal?: AbortSignal) => {
      const g = gate(started, name);
      opens.push(g.open);
      const run = withHashSlot('10.0.0.66', g.job, signal);
      runs.push(run.catch(() => {}));
      return run;
    };
    submit('r1');
    submit('r2');
    const gone = new AbortController();
    const abandoned = submit('w1', gone.signal);
    submit('w2');
    expect(hashLoad().waiting).toBe(2);
    gone.abort(new Error('client gone'));
    await expect(abandoned).rejects.toThrow('client gone');
    expect(hashLoad().waiting).toBe(1);
    while (hashLoad().running > 0) {
      for (const open of opens) open();
      await settle();
    }
    await Promise.all(runs);
    expect(started).toEqual(['r1', 'r2', 'w2']);
    // an already aborted signal never queues
    await expect(withHashSlot('x', async () => 1, AbortSignal.abort())).rejects.toBeTruthy();
    expect(hashLoad()).toEqual({ running: 0, waiting: 0, sources: 0 });
  });

  it('issue 12.10: queues by IPv4 address, IPv6 /64, an IPv4-mapped address as IPv4', () => {
    expect(sourceKey('127.0.0.2')).toBe('127.0.0.2');
    expect(sourceKey('::ffff:127.0.0.2')).toBe('127.0.0.2');
    expect(sourceKey('2001:db8:1:2:3:4:5:6')).toBe('2001:db8:1:2::/64');
    expect(sourceKey('2001:db8:1:2::99')).toBe('2001:db8:1:2::/64');
    expect(sourceKey('2001:0db8:0001:0002:ffff::1')).toBe('2001:db8:1:2::/64');
    expect(sourceKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(sourceKey('::1')).toBe('0:0:0:0::/64');
    expect(sourceKey('64:ff9b::192.0.2.1')).toBe('64:ff9b:0:0::/64');
    expect(sourceKey(undefined)).toBe('');
  });
});

describe('issue 12.10: the decoy hash of an unknown user', () => {
  it("issue 12.10: costs the file's usual iterations, kind and salt length, not a default", async () => {
    const costly = await hashPassword('pw', { iterations: 20_000, saltBytes: 64 });
    const file = PasswordFile.parse(`alice:${costly}\nbob:${costly}\n`, 'f');
    expect(file.decoy).toMatchObject({ kind: 'pbkdf2-sha512', iterations: 20_000 });
    expect(file.decoy.salt).toHaveLength(64);
    expect(20_000).not.toBe(DEFAULT_ITERATIONS);
    // the most common cost wins; a tie goes to the costlier
    const cheap = await hashPassword('pw', { iterations: 101 });
    const users = (text: string) => PasswordFile.parse(text, 'f').users;
    expect(decoyHash(users(`a:${cheap}\nb:${cheap}\nc:${costly}\n`))).toMatchObject({ iterations: 101 });
    expect(decoyHash(users(`a:${cheap}\nc:${costly}\n`))).toMatchObject({ iterations: 20_000 });
    // a file of $6$ lines: an unknown user costs one SHA-512 like everyone else
    const legacy = await hashPassword('pw', { algorithm: 'sha512' });
    expect(decoyHash(users(`a:${legacy}\n`)).kind).toBe('sha512');
    expect(decoyHash(users(''))).toMatchObject({ kind: 'pbkdf2-sha512', iterations: DEFAULT_ITERATIONS });
  });

  it('issue 12.10: an unknown user is checked against the decoy through the same queue', async () => {
    const h = await hashPassword('pw', { iterations: 5000 });
    const file = PasswordFile.parse(`alice:${h}\n`, 'f');
    const pending = [
      file.verify('mallory', Buffer.from('pw'), '10.0.0.1'),
      file.verify('alice', Buffer.from('pw'), '10.0.0.1'),
    ];
    // both took a hash slot (the unknown user's is a PBKDF2 too, not a shortcut)
    expect(hashLoad().running).toBe(2);
    expect(await Promise.all(pending)).toEqual([false, true]);
  });
});
