/**
 * Bridges between two broker-lites in this process: the bridge's internal connection is outside
 * a password file and an ACL that refuse everyone else (and cannot be impersonated), drop
 * counters and policies, start_type once and lazy (with a slow disk), restart_timeout backoff,
 * what the CONNECT carries (keepalive, credentials, will) as a recording upstream sees it, and
 * hostile upstreams (garbage, a refusal, a closed socket).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  connect,
  type Outbox,
  type OutboxEntry,
  type OutboxMessage,
  type OutboxStats,
} from '@mqtt-edge/client';
import { type Packet, PacketParser } from '@mqtt-edge/codec';
import { describe, expect, it } from 'vitest';
import {
  type BridgedBroker,
  closeAfterEach,
  eventually,
  Recorder,
  startBridged,
  startUpstream,
} from '../../../test/bridge-helpers.ts';
import { nextBackoff, startBridges } from '../src/bridge.ts';
import { Broker } from '../src/broker.ts';
import { parseConfig } from '../src/config.ts';

const closers = closeAfterEach();
const upstream = () => startUpstream(closers);

async function gateway(lines: string[]): Promise<BridgedBroker> {
  const b = await startBridged(lines.join('\n'));
  closers.push(() => b.close());
  return b;
}

/** A TCP server that answers each connection with `reply` (or closes it at once when undefined). */
async function hostile(reply: Uint8Array | undefined): Promise<number> {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', () => {
      if (reply === undefined) s.destroy();
      else s.end(reply);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as net.AddressInfo).port;
}

describe('bridge on a broker with a password file and an ACL', () => {
  it('logs in internally, bypassing both, while other clients stay refused', async () => {
    const up = await upstream();
    const dir = mkdtempSync(join(tmpdir(), 'bl-bridge-sec-'));
    closers.push(() => rmSync(dir, { recursive: true, force: true }));
    const cfg = parseConfig(
      `listener 0 127.0.0.1\nconnection up\naddress 127.0.0.1:${up.port}\ntopic data/# both 1\nrestart_timeout 1\ncleansession true\n`,
      join(dir, 'b.conf'),
    );
    const denied: string[] = [];
    const askedAbout: string[] = [];
    const broker = new Broker({
      listeners: [{ port: 0, host: '127.0.0.1', protocol: 'mqtt' }],
      sysInterval: 0,
      allowAnonymous: false,
      authFailureDelayMs: 0,
      // Only alice/secret gets in, and alice may only publish to data/#, read nothing.
      authenticator: {
        authenticate: ({ clientId, username, password }) => {
          askedAbout.push(clientId);
          return (
            username === 'alice' && password !== undefined && Buffer.from(password).toString() === 'secret'
          );
        },
      },
      accessControl: {
        allowed: (access, client, topic) => {
          askedAbout.push(client.clientId);
          const ok = client.username === 'alice' && access === 'write' && topic.startsWith('data/');
          if (!ok) denied.push(`${client.username}:${access}:${topic}`);
          return ok;
        },
      },
    });
    await broker.listen();
    const bridges = await startBridges(broker, cfg.bridges, { queueDir: (n) => join(dir, n) });
    closers.push(async () => {
      await bridges.close();
      await broker.close();
    });
    const port = broker.addresses[0].port;
    const upRec = await Recorder.open(up.port, ['data/#']);
    closers.push(() => upRec.end());
    const alice = connect({
      host: '127.0.0.1',
      port,
      username: 'alice',
      password: 'secret',
      reconnect: false,
    });
    closers.push(() => alice.end({ force: true }));
    await new Promise<void>((r) => alice.once('connect', () => r()));
    await eventually(() => bridges.stats()[0].state === 'connected', 'bridge connected');
    await alice.publish('data/x', 'from-alice', { qos: 1 });
    await upRec.until(() => upRec.on('data/x').length === 1, 'data/x upstream');
    // Incoming: published here by the bridge although the ACL refuses everyone but alice.
    const before = broker.stats().publishReceived;
    await upRec.client.publish('data/in', 'from-up', { qos: 1 });
    await eventually(() => broker.stats().publishReceived > before, 'the incoming message published here');
    // Neither check was ever asked about the bridge's local session.
    const localId = cfg.bridges[0].localClientId;
    expect(askedAbout.length).toBeGreaterThan(0);
    expect(askedAbout.filter((id) => id === localId)).toEqual([]);
    expect(denied.filter((d) => d.startsWith('undefined:'))).toEqual([]);

    // A client that claims the bridge's user name (or any made-up $bridge/ name) is refused.
    const user = `$bridge/up/${'0'.repeat(32)}`;
    const intruder = connect({ host: '127.0.0.1', port, username: user, password: 'x', reconnect: false });
    const err = await new Promise<Error>((r) => intruder.once('error', r));
    expect(err.message).toMatch(/refused/);
    await intruder.end({ force: true });

    // Valid credentials and the bridge's client id: refused, and the bridge stays up.
    const thief = connect({
      host: '127.0.0.1',
      port,
      clientId: localId,
      username: 'alice',
      password: 'secret',
      reconnect: false,
    });
    const refused = await new Promise<Error>((r) => thief.once('error', r));
    expect(refused.message).toMatch(/identifier rejected/);
    await thief.end({ force: true });
    await alice.publish('data/after', 'still-bridged', { qos: 1 });
    await upRec.until(() => upRec.on('data/after').length === 1, 'data/after upstream');
    expect(bridges.stats()[0].connects).toBe(1);
  }, 20_000);
});

describe('an in-only bridge', () => {
  it('publishes what it receives here although it subscribes to nothing here', async () => {
    const up = await upstream();
    const gw = await gateway([
      'connection in-only',
      `address 127.0.0.1:${up.port}`,
      'topic cmd/# in 1 local/ ""',
      'restart_timeout 1',
      'cleansession true',
    ]);
    await gw.waitLog((l) => l.message === 'bridge connected');
    await gw.waitLog((l) => l.message === 'bridge local session up');
    const local = await Recorder.open(gw.port, ['local/#']);
    closers.push(() => local.end());
    const upc = await Recorder.open(up.port, []);
    closers.push(() => upc.end());
    await upc.client.publish('cmd/go', 'now', { qos: 1 });
    await local.until(() => local.on('local/cmd/go').length === 1, 'local/cmd/go');
  });
});

describe('bridge counters and policies', () => {
  it('drops QoS 0 while down and oversize messages, counted, without holding up local traffic', async () => {
    const port = await hostile(undefined);
    const gw = await gateway([
      'connection down',
      `address 127.0.0.1:${port}`,
      'topic q/# out 1',
      'restart_timeout 1',
      'bridge_max_packet_size 100',
    ]);
    const local = await Recorder.open(gw.port, ['q/#']);
    closers.push(() => local.end());
    await local.client.publish('q/zero', 'x', { qos: 0 });
    await local.client.publish('q/big', new Uint8Array(200), { qos: 1 });
    await local.client.publish('q/ok', 'y', { qos: 1 });
    await local.until(() => local.got.length === 3, 'local deliveries');
    await gw.waitLog((l) => l.message === 'bridge dropped messages');
    const s = gw.bridges.stats()[0];
    expect(s.outDropped).toBe(2);
    expect(s.queue.count).toBe(1);
    expect(s.state).not.toBe('connected');
    // The same counters, retained under $SYS/broker/connection/REMOTE_CLIENTID/ (each
    // sys_interval), beside the state; the default client id is HOSTNAME.NAME.
    gw.bridges.list[0].publishSys();
    const at = `$SYS/broker/connection/${hostname()}.down`;
    const sys = await Recorder.open(gw.port, [`${at}/#`]);
    closers.push(() => sys.end());
    await sys.until(() => sys.got.length >= 9, 'retained bridge counters');
    const v = (name: string) => sys.on(`${at}/${name}`)[0]?.payload;
    expect(v('state')).toBe('0');
    expect(v('messages/queued')).toBe('1');
    expect(v('messages/dropped')).toBe('2');
    expect(v('last_error')).not.toBe('');
  });

  it('reject-new: a full queue refuses new messages, counted, and local publishers are still acknowledged', async () => {
    const port = await hostile(undefined);
    const gw = await gateway([
      'connection full',
      `address 127.0.0.1:${port}`,
      'topic f/# out 1',
      'restart_timeout 1',
      'bridge_queue_max_messages 5',
      'bridge_queue_drop_policy reject-new',
    ]);
    const pub = await Recorder.open(gw.port, ['f/#']);
    closers.push(() => pub.end());
    const acks = [];
    for (let i = 0; i < 20; i++) acks.push(pub.client.publish('f/x', String(i), { qos: 1 }));
    await Promise.all(acks);
    await pub.until(() => pub.got.length === 20, 'local deliveries');
    await eventually(() => gw.bridges.stats()[0].outDropped >= 15, '15 refused');
    const s = gw.bridges.stats()[0];
    expect(s.queue.count).toBe(5);
    expect(s.outDropped).toBe(15);
    expect(s.queue.rejectedNew).toBe(15);
  });
});

describe('bridge to a hostile or refusing upstream', () => {
  it('garbage in answer to CONNECT: logged with the reason, retried, no crash', async () => {
    const port = await hostile(new Uint8Array([0x20, 0x7f, 1, 2, 3, 0xff, 0xff, 0xff, 0xff, 0x0f]));
    const gw = await gateway([
      'connection junk',
      `address 127.0.0.1:${port}`,
      'topic j/# out 1',
      'restart_timeout 1 4',
    ]);
    const l = await gw.waitLog((x) => x.message === 'bridge connect failed');
    expect(String(l.fields?.reason)).not.toBe('connection closed');
    // Mosquitto 2's backoff with the test's jitter (0.5): min(cap, base + 0.5 * (3 x base - base)).
    expect(l.fields?.retryInMs).toBe(2000);
    expect(gw.bridges.stats()[0].connectFailures).toBe(1);
  });

  it('a CONNACK refusal (not authorised) is logged and retried', async () => {
    // 3.1.1 CONNACK, return code 5 (not authorised).
    const port = await hostile(new Uint8Array([0x20, 0x02, 0x00, 0x05]));
    const gw = await gateway([
      'connection refused',
      `address 127.0.0.1:${port}`,
      'topic r/# out 1',
      'restart_timeout 1',
      'try_private false',
    ]);
    const l = await gw.waitLog((x) => x.message === 'bridge connect failed');
    expect(String(l.fields?.reason)).toMatch(/not authori[sz]ed/i);
  });

  it('a bridge that cannot connect keeps one client and its listeners across attempts', async () => {
    const port = await hostile(undefined);
    const gw = await gateway([
      'connection loop',
      `address 127.0.0.1:${port}`,
      'topic l/# out 1',
      'restart_timeout 1',
    ]);
    const bridge = gw.bridges.list[0] as unknown as { client: import('@mqtt-edge/client').MqttClient };
    await gw.waitLog((x) => x.message === 'bridge connect failed');
    const client = bridge.client;
    const listeners = client.eventNames().map((e) => client.listenerCount(e));
    // Two more attempts (restart_timeout 1).
    await eventually(() => gw.bridges.stats()[0].connectFailures >= 3, 'three failures', 8000);
    expect(bridge.client).toBe(client);
    expect(client.eventNames().map((e) => client.listenerCount(e))).toEqual(listeners);
  }, 15_000);

  it('start_type once: not restarted after the first failure', async () => {
    const port = await hostile(undefined);
    const gw = await gateway([
      'connection one',
      `address 127.0.0.1:${port}`,
      'topic o/# out 1',
      'start_type once',
    ]);
    await gw.waitLog((x) => /start_type once/.test(x.message));
    expect(gw.bridges.stats()[0].state).toBe('stopped');
    expect(gw.logs.filter((x) => x.message === 'bridge connect failed')).toEqual([]);
  });
});

describe('start_type lazy', () => {
  it('tries nothing up to the threshold; past it retries while the backlog stays above it', async () => {
    const port = await hostile(undefined);
    const gw = await gateway([
      'connection lz',
      `address 127.0.0.1:${port}`,
      'topic lz/# out 1',
      'start_type lazy',
      'threshold 2',
      'restart_timeout 1',
    ]);
    const bridge = gw.bridges.list[0];
    const c = connect({ host: '127.0.0.1', port: gw.port, reconnect: false });
    closers.push(() => c.end());
    await new Promise<void>((r) => c.once('connect', () => r()));
    expect(bridge.state).toBe('idle');
    await c.publish('lz/a', '1', { qos: 1 });
    await c.publish('lz/a', '2', { qos: 1 });
    await eventually(() => bridge.stats().queue.count === 2, 'two queued');
    expect(bridge.state).toBe('idle');
    expect(bridge.stats().connectFailures).toBe(0);
    await c.publish('lz/a', '3', { qos: 1 });
    await gw.waitLog((x) => x.message === 'bridge connect failed');
    // Three queued > threshold 2: not idle, the next attempt is scheduled.
    expect(bridge.state === 'waiting' || bridge.state === 'connecting').toBe(true);
    expect(bridge.stats().queue.count).toBe(3);
  });

  it('between broker-lites: connects past the threshold, drains, goes idle after idle_timeout', async () => {
    const up = await upstream();
    const gw = await gateway([
      'connection lz',
      `address 127.0.0.1:${up.port}`,
      'topic lz/# out 1',
      'start_type lazy',
      'threshold 1',
      'idle_timeout 1',
      'restart_timeout 1',
      'cleansession true',
    ]);
    const bridge = gw.bridges.list[0];
    const there = await Recorder.open(up.port, ['lz/#']);
    closers.push(() => there.end());
    const c = connect({ host: '127.0.0.1', port: gw.port, reconnect: false });
    closers.push(() => c.end());
    await new Promise<void>((r) => c.once('connect', () => r()));
    await c.publish('lz/a', 'a', { qos: 1 });
    await eventually(() => bridge.stats().queue.count === 1, 'one queued');
    expect(bridge.state).toBe('idle');
    await c.publish('lz/a', 'b', { qos: 1 });
    await there.until(() => there.on('lz/a').length >= 2, 'both upstream');
    expect(there.on('lz/a').map((x) => x.payload)).toEqual(['a', 'b']);
    await gw.waitLog((x) => x.message.startsWith('bridge idle'), 5000);
    expect(bridge.state).toBe('idle');
    expect(bridge.stats().queue.count).toBe(0);
  });
});

/**
 * A disk that takes its time: each put() goes into the real queue at once (so stats() counts it,
 * as the durable queue does from the call on) but resolves, and becomes readable, only when the
 * test releases it.
 */
class SlowOutbox implements Outbox {
  readonly calls: string[] = [];
  /** put() calls the real queue has finished (each still held until released). */
  written = 0;
  private readonly gates: Array<() => void> = [];
  private readonly hidden = new Set<number>();
  private waiter: (() => void) | null = null;
  constructor(private readonly inner: Outbox) {}

  put(message: OutboxMessage): Promise<number> {
    this.calls.push(Buffer.from(message.payload).toString());
    const i = this.calls.length - 1;
    const gate = new Promise<void>((r) => {
      this.gates[i] = r;
    });
    return this.inner.put(message).then(async (seq) => {
      this.hidden.add(seq);
      this.written++;
      this.waiter?.();
      await gate;
      this.hidden.delete(seq);
      return seq;
    });
  }

  /** Resolves once the real queue has finished `n` puts. */
  async untilWritten(n: number): Promise<void> {
    while (this.written < n) await new Promise<void>((r) => (this.waiter = r));
    this.waiter = null;
  }

  release(i: number): void {
    this.gates[i]();
  }

  read(afterSeq: number, max: number): OutboxEntry[] {
    return this.inner
      .read(afterSeq, max + this.hidden.size)
      .filter((e) => !this.hidden.has(e.seq))
      .slice(0, max);
  }

  ack(seq: number): void {
    this.inner.ack(seq);
  }

  stats(now?: number): OutboxStats {
    return this.inner.stats(now);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

describe('start_type lazy with a slow disk', () => {
  it('counts only stored messages toward the threshold, and sends one stored after the CONNACK read', async () => {
    const up = await upstream();
    let slow: SlowOutbox | undefined;
    const gw = await startBridged(
      [
        'connection lz',
        `address 127.0.0.1:${up.port}`,
        'topic lz/# out 1',
        'start_type lazy',
        'threshold 1',
        'restart_timeout 1',
        'cleansession true',
      ].join('\n'),
      undefined,
      0,
      {
        wrapQueue: (q) => {
          slow = new SlowOutbox(q);
          return slow;
        },
      },
    );
    closers.push(() => gw.close());
    const bridge = gw.bridges.list[0];
    const there = await Recorder.open(up.port, ['lz/#']);
    closers.push(() => there.end());
    const c = connect({ host: '127.0.0.1', port: gw.port, reconnect: false });
    closers.push(() => c.end());
    await new Promise<void>((r) => c.once('connect', () => r()));
    await Promise.all(['m1', 'm2', 'm3'].map((m) => c.publish('lz/a', m, { qos: 1 })));
    await slow!.untilWritten(3);
    // Three counted by the queue, none stored (as far as the bridge knows): idle.
    expect(bridge.stats().queue.count).toBe(3);
    expect(bridge.state).toBe('idle');

    // One stored (two still being written): not past threshold 1 yet.
    slow!.release(0);
    await new Promise((r) => setImmediate(r));
    expect(bridge.state).toBe('idle');

    // Two stored: connects, and both go out.
    slow!.release(1);
    await gw.waitLog((l) => l.message === 'bridge connected');
    await there.until(() => there.on('lz/a').length === 2, 'm1 and m2 upstream');
    // Acknowledged upstream: no ack left to make the client read the queue again.
    await eventually(() => bridge.stats().outAcked === 2, 'm1 and m2 acknowledged');

    // The third write finishes only now, after every read the connection made.
    slow!.release(2);
    await there.until(() => there.on('lz/a').length === 3, 'm3 upstream', 3000);
    expect(there.on('lz/a').map((x) => x.payload)).toEqual(['m1', 'm2', 'm3']);
    expect(bridge.state).toBe('connected');
  });

  it('between broker-lites on the real queue: 10 lazy starts in a row each deliver the backlog', async () => {
    const up = await upstream();
    const there = await Recorder.open(up.port, ['lz/#']);
    closers.push(() => there.end());
    const t0 = Date.now();
    for (let run = 0; run < 10 && Date.now() - t0 < 15_000; run++) {
      const gw = await startBridged(
        [
          'connection lz',
          `address 127.0.0.1:${up.port}`,
          'topic lz/# out 1',
          'start_type lazy',
          'threshold 1',
          'restart_timeout 1',
          'cleansession true',
        ].join('\n'),
      );
      try {
        const c = connect({ host: '127.0.0.1', port: gw.port, reconnect: false });
        await new Promise<void>((r) => c.once('connect', () => r()));
        // Not awaited one by one: the writes overlap the connect, as under load.
        await Promise.all([c.publish(`lz/${run}`, 'a', { qos: 1 }), c.publish(`lz/${run}`, 'b', { qos: 1 })]);
        await there.until(() => there.on(`lz/${run}`).length === 2, `run ${run}: both upstream`, 3000);
        expect(there.on(`lz/${run}`).map((x) => x.payload)).toEqual(['a', 'b']);
        await c.end();
      } finally {
        await gw.close();
      }
    }
    expect(new Set(there.got.map((g) => g.topic)).size).toBe(10);
  }, 20_000);
});

describe('restart_timeout backoff', () => {
  it('nextBackoff: base at first, grows by up to 3x per failure, stops at the cap, jitter in range', () => {
    const base = 1000;
    const cap = 30_000;
    // Lowest draw: always the base.
    expect(nextBackoff(base, base, cap, () => 0)).toBe(base);
    expect(nextBackoff(20_000, base, cap, () => 0)).toBe(base);
    // Highest draw: x3 per step until the cap, then the cap.
    const top = () => 1 - 1e-12;
    const seq: number[] = [];
    let prev = base;
    for (let i = 0; i < 6; i++) seq.push((prev = nextBackoff(prev, base, cap, top)));
    expect(seq).toEqual([2999, 8996, 26_987, 30_000, 30_000, 30_000]);
    // Any draw: within [base, min(cap, 3 x previous)], from a seeded generator.
    let x = 42;
    const lcg = () => {
      x = (x * 1_103_515_245 + 12_345) % 2 ** 31;
      return x / 2 ** 31;
    };
    prev = base;
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const d = nextBackoff(prev, base, cap, lcg);
      expect(d).toBeGreaterThanOrEqual(base);
      expect(d).toBeLessThanOrEqual(Math.min(cap, 3 * prev));
      seen.add(Math.floor(d / 1000));
      prev = d;
    }
    // Jittered, not a handful of fixed values; the cap is reached.
    expect(seen.size).toBeGreaterThan(20);
    expect(seen.has(30)).toBe(true);
  });

  it('a real reconnect sequence: waits grow to the cap, each one as logged', async () => {
    const attempts: number[] = [];
    const server = net.createServer((s) => {
      attempts.push(performance.now());
      s.on('error', () => {});
      s.destroy();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise<void>((r) => server.close(() => r())));
    const port = (server.address() as net.AddressInfo).port;
    const dir = mkdtempSync(join(tmpdir(), 'bl-bridge-backoff-'));
    closers.push(() => rmSync(dir, { recursive: true, force: true }));
    const cfg = parseConfig(
      `listener 0 127.0.0.1\nconnection bo\naddress 127.0.0.1:${port}\ntopic b/# out 1\nrestart_timeout 1 8\n`,
      join(dir, 'b.conf'),
    );
    // The same backoff in milliseconds instead of seconds: 50 ms base, 400 ms cap.
    cfg.bridges[0].restartTimeout = { baseSeconds: 0.05, capSeconds: 0.4 };
    const logs: Array<{ message: string; fields?: Record<string, unknown> }> = [];
    const broker = new Broker({
      listeners: [{ port: 0, host: '127.0.0.1', protocol: 'mqtt' }],
      sysInterval: 0,
      logger: { log: (_level, message, fields) => logs.push({ message, fields }) },
    });
    await broker.listen();
    const draws = [0.999, 0.999, 0.999, 0.25];
    let n = 0;
    const bridges = await startBridges(broker, cfg.bridges, {
      queueDir: (name) => join(dir, name),
      random: () => draws[Math.min(n++, draws.length - 1)],
    });
    closers.push(async () => {
      await bridges.close();
      await broker.close();
    });
    await eventually(() => attempts.length >= 5, 'five attempts', 5000);
    const waits = logs.filter((l) => l.message === 'bridge connect failed').map((l) => l.fields?.retryInMs);
    // 50 + 0.999 x (150 - 50); then min(400, 50 + 0.999 x (447 - 50)); then the cap; then
    // 50 + 0.25 x (1200 - 50) = 337 (the jitter may go down again).
    expect(waits.slice(0, 4)).toEqual([149, 400, 400, 337]);
    for (let i = 1; i < 5; i++) {
      const gap = attempts[i] - attempts[i - 1];
      // At least the logged wait (timers never fire early; 2 ms for clock granularity).
      expect(gap).toBeGreaterThanOrEqual((waits[i - 1] as number) - 2);
    }
    expect(bridges.stats()[0].connectFailures).toBeGreaterThanOrEqual(4);
  });
});

/** A fake upstream over a real socket: records each packet the bridge sends, answers CONNACK / PUBACK. */
async function recordingUpstream(): Promise<{
  port: number;
  packets: Packet[];
  until(n: number): Promise<void>;
}> {
  const packets: Packet[] = [];
  let wake: (() => void) | null = null;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    const parser = new PacketParser();
    s.on('data', (chunk: Buffer) => {
      try {
        parser.push(new Uint8Array(chunk), (p) => {
          packets.push(p);
          if (p.type === 'connect') s.write(new Uint8Array([0x20, 2, 0, 0]));
          else if (p.type === 'publish' && p.qos === 1)
            s.write(new Uint8Array([0x40, 2, p.packetId! >> 8, p.packetId! & 0xff]));
          else if (p.type === 'subscribe')
            s.write(new Uint8Array([0x90, 3, p.packetId >> 8, p.packetId & 0xff, 1]));
        });
      } catch {
        s.destroy();
      }
      wake?.();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  );
  return {
    port: (server.address() as net.AddressInfo).port,
    packets,
    async until(n) {
      const t = Date.now() + 5000;
      while (packets.length < n) {
        if (Date.now() > t) throw new Error(`only ${packets.length} packets: ${JSON.stringify(packets)}`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 100);
        });
      }
    },
  };
}

function text(b: Uint8Array | undefined): string | undefined {
  return b === undefined ? undefined : Buffer.from(b).toString();
}

describe('what the bridge tells the upstream (a recording fake upstream)', () => {
  it('keepalive_interval, remote_clientid, remote_username / remote_password, the will and the state', async () => {
    const up = await recordingUpstream();
    await gateway([
      'connection rec',
      `address 127.0.0.1:${up.port}`,
      'topic f/# out 1',
      'keepalive_interval 17',
      'remote_clientid gw-rec',
      'remote_username gw-user',
      'remote_password s3cret:pass',
      'cleansession true',
    ]);
    await up.until(2);
    const [connect, state] = up.packets;
    if (connect.type !== 'connect') throw new Error(`first packet ${connect.type}`);
    expect(connect.keepalive).toBe(17);
    expect(connect.clientId).toBe('gw-rec');
    expect(connect.username).toBe('gw-user');
    expect(text(connect.password)).toBe('s3cret:pass');
    expect(connect.protocolVersion).toBe(4);
    expect(connect.bridge).toBe(true);
    expect(connect.clean).toBe(true);
    expect(connect.will).toMatchObject({
      topic: '$SYS/broker/connection/gw-rec/state',
      qos: 1,
      retain: true,
    });
    expect(text(connect.will?.payload)).toBe('0');
    expect(state).toMatchObject({
      type: 'publish',
      topic: '$SYS/broker/connection/gw-rec/state',
      retain: true,
    });
    expect(text((state as { payload: Uint8Array }).payload)).toBe('1');
  });

  it('keepalive_interval 0, notifications_local_only: no keepalive, no will, no state upstream', async () => {
    const up = await recordingUpstream();
    const gw = await gateway([
      'connection rec',
      `address 127.0.0.1:${up.port}`,
      'topic f/# out 1',
      'keepalive_interval 0',
      'notifications_local_only true',
      'cleansession true',
    ]);
    await gw.waitLog((l) => l.message === 'bridge connected');
    await gw.waitLog((l) => l.message === 'bridge local session up');
    const c = connect({ host: '127.0.0.1', port: gw.port, reconnect: false });
    closers.push(() => c.end());
    await new Promise<void>((r) => c.once('connect', () => r()));
    await c.publish('f/fence', 'x', { qos: 1 });
    await up.until(2);
    const [first, second] = up.packets;
    if (first.type !== 'connect') throw new Error(`first packet ${first.type}`);
    expect(first.keepalive).toBe(0);
    expect(first.will).toBeUndefined();
    // The first thing published upstream is the fence: no state before it.
    expect(second).toMatchObject({ type: 'publish', topic: 'f/fence' });
    // Here the state is kept as usual.
    const r = gw.broker.retain.get(`$SYS/broker/connection/${hostname()}.rec/state`);
    expect(text(r?.payload)).toBe('1');
  });

  it('notification_topic: the will and the state use it', async () => {
    const up = await recordingUpstream();
    await gateway([
      'connection rec',
      `address 127.0.0.1:${up.port}`,
      'topic f/# out 1',
      'notification_topic gw/bridge/state',
      'cleansession true',
    ]);
    await up.until(2);
    const [first, second] = up.packets;
    if (first.type !== 'connect') throw new Error(`first packet ${first.type}`);
    expect(first.will?.topic).toBe('gw/bridge/state');
    expect(second).toMatchObject({ type: 'publish', topic: 'gw/bridge/state', retain: true });
  });

  // As Mosquitto (bridge.c): the state topic names the bridge by its remote client id, which is
  // unique on the remote, where two gateways' `connection cloud` would overwrite each other's
  // state. (The `1` upstream stays QoS 0, ahead of the bridge's queue: differences.ts.)
  it('issue 15.1: the state topic is $SYS/broker/connection/REMOTE_CLIENTID/state on both sides; counters under the same name (bridge.state-notifications)', async () => {
    const up = await recordingUpstream();
    const gw = await gateway([
      'connection rec',
      `address 127.0.0.1:${up.port}`,
      'topic f/# out 1',
      'remote_clientid gw-7',
      'cleansession true',
    ]);
    await up.until(2);
    const [first, second] = up.packets;
    if (first.type !== 'connect') throw new Error(`first packet ${first.type}`);
    const topic = '$SYS/broker/connection/gw-7/state';
    expect(first.will).toMatchObject({ topic, qos: 1, retain: true });
    expect(second).toMatchObject({ type: 'publish', topic, qos: 0, retain: true });
    await eventually(() => text(gw.broker.retain.get(topic)?.payload) === '1', 'the state here');
    expect(gw.broker.retain.get('$SYS/broker/connection/rec/state')).toBeUndefined();
    gw.bridges.list[0].publishSys();
    expect(text(gw.broker.retain.get('$SYS/broker/connection/gw-7/bridge_state')?.payload)).toBeDefined();
    expect(gw.broker.retain.get('$SYS/broker/connection/rec/bridge_state')).toBeUndefined();
  });

  it('issue 15.1: the default state topic follows the default remote client id (HOSTNAME.NAME); notification_topic given before remote_clientid is kept', async () => {
    const def = parseConfig(
      'connection rec\naddress 127.0.0.1:1883\ntopic f/# out\n',
      join(tmpdir(), 'x.conf'),
    ).bridges[0];
    expect(def.notificationTopic).toBe(`$SYS/broker/connection/${hostname()}.rec/state`);
    const kept = parseConfig(
      'connection rec\naddress 127.0.0.1:1883\ntopic f/# out\nnotification_topic a/b\nremote_clientid gw\n',
      join(tmpdir(), 'x.conf'),
    ).bridges[0];
    expect(kept.notificationTopic).toBe('a/b');
    // A client id that cannot be a topic level names the bridge by NAME.
    for (const id of ['a+b', 'a#']) {
      const odd = parseConfig(
        `connection rec\naddress 127.0.0.1:1883\ntopic f/# out\nremote_clientid ${id}\n`,
        join(tmpdir(), 'x.conf'),
      ).bridges[0];
      expect(odd.notificationTopic).toBe('$SYS/broker/connection/rec/state');
    }
  });
});
