import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, pbkdf2Sync, randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../src/config-error.ts';
import {
  createAuthenticator,
  hashLoad,
  hashPassword,
  MAX_CONCURRENT_HASHES,
  MAX_PASSWORD_FILE_BYTES,
  PasswordFile,
  parseHash,
  parsePasswordFile,
} from '../src/passwd.ts';
import { runPasswd } from '../src/password-cli.ts';

const MOSQUITTO_PASSWD = '/usr/bin/mosquitto_passwd';
const MOSQUITTO = '/usr/sbin/mosquitto';
const MOSQUITTO_PUB = '/usr/bin/mosquitto_pub';
const hasPasswdTool = existsSync(MOSQUITTO_PASSWD);
const hasMosquitto = existsSync(MOSQUITTO) && existsSync(MOSQUITTO_PUB);
if (!hasPasswdTool) console.warn(`skipping mosquitto_passwd interop: ${MOSQUITTO_PASSWD} is not installed`);
if (!hasMosquitto)
  console.warn(`skipping mosquitto interop: ${MOSQUITTO} or ${MOSQUITTO_PUB} is not installed`);

const dir = mkdtempSync(join(tmpdir(), 'bl-passwd-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const tmp = (name: string): string => join(dir, `${++n}-${name}`);
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

function io(stdinText = ''): {
  io: Parameters<typeof runPasswd>[1];
  out: () => string;
  err: () => string;
} {
  let out = '';
  let err = '';
  return {
    io: {
      stdin: Readable.from([stdinText]),
      stdout: { write: (s: string) => (out += s) },
      stderr: { write: (s: string) => (err += s) },
    },
    out: () => out,
    err: () => err,
  };
}

describe('hash vectors', () => {
  it('verifies a $6$ line made by hand: SHA-512 over password then salt', async () => {
    const salt = Buffer.from('0123456789abcdef');
    const hash = createHash('sha512').update('hunter2').update(salt).digest();
    const file = PasswordFile.parse(`u:$6$${salt.toString('base64')}$${hash.toString('base64')}\n`, 'f');
    expect(await file.verify('u', bytes('hunter2'))).toBe(true);
    expect(await file.verify('u', bytes('hunter3'))).toBe(false);
  });

  for (const [saltBytes, iterations] of [
    [12, 101],
    [64, 1000],
    [1, 1],
    [100, 7],
  ] as const) {
    it(`verifies a $7$ line with a ${saltBytes}-byte salt and ${iterations} iterations`, async () => {
      const salt = randomBytes(saltBytes);
      const key = pbkdf2Sync('pässwörd', salt, iterations, 64, 'sha512');
      const line = `dev-1:$7$${iterations}$${salt.toString('base64')}$${key.toString('base64')}`;
      const file = PasswordFile.parse(line, 'f');
      expect(await file.verify('dev-1', bytes('pässwörd'))).toBe(true);
      expect(await file.verify('dev-1', bytes('passwörd'))).toBe(false);
      expect(await file.verify('dev-2', bytes('pässwörd'))).toBe(false);
    });
  }

  it('hashPassword writes 12-byte salts and 1000 iterations by default, and $6$ on request', async () => {
    const h = await hashPassword('pw');
    const m = /^\$7\$1000\$([^$]+)\$([^$]+)$/.exec(h)!;
    expect(Buffer.from(m[1], 'base64')).toHaveLength(12);
    expect(Buffer.from(m[2], 'base64')).toHaveLength(64);
    const parsed = parseHash(h);
    expect(typeof parsed).toBe('object');
    const six = await hashPassword('pw', { algorithm: 'sha512' });
    expect(six).toMatch(/^\$6\$[^$]+\$[^$]+$/);
    const f = PasswordFile.parse(`a:${h}\nb:${six}\n`, 'f');
    expect(await f.verify('a', bytes('pw'))).toBe(true);
    expect(await f.verify('b', bytes('pw'))).toBe(true);
    expect(await f.verify('b', bytes('pW'))).toBe(false);
  });

  it.skipIf(!hasPasswdTool)(
    'verifies what the installed mosquitto_passwd writes ($7$ and -H sha512)',
    async () => {
      const file = tmp('mosq');
      writeFileSync(file, '');
      execFileSync(MOSQUITTO_PASSWD, ['-b', file, 'alice', 'secret one']);
      execFileSync(MOSQUITTO_PASSWD, ['-H', 'sha512', '-b', file, 'bob', 'b0b']);
      const text = readFileSync(file, 'utf8');
      // What 2.0.11 writes: 101 iterations and a 12-byte salt.
      const alice = /^alice:\$7\$(\d+)\$([^$]+)\$/m.exec(text)!;
      expect(alice[1]).toBe('101');
      expect(Buffer.from(alice[2], 'base64')).toHaveLength(12);
      const f = await PasswordFile.load(file);
      expect(await f.verify('alice', bytes('secret one'))).toBe(true);
      expect(await f.verify('alice', bytes('secret two'))).toBe(false);
      expect(await f.verify('bob', bytes('b0b'))).toBe(true);
      expect(await f.verify('bob', bytes('bob'))).toBe(false);
    },
  );
});

describe('hash scheduling', () => {
  it('runs at most two hashes at once, queues the rest, and every login still gets its answer', async () => {
    const h = await hashPassword('pw', { iterations: 2000 });
    const f = PasswordFile.parse(`u:${h}\n`, 'f');
    let peak = 0;
    const timer = setInterval(() => {
      peak = Math.max(peak, hashLoad().running);
    }, 0);
    const results = await Promise.all(
      // four addresses, ten logins each: under the per-address bound of the login queue
      Array.from({ length: 40 }, (_, i) =>
        f.verify('u', bytes(i % 2 === 0 ? 'pw' : 'nope'), `10.0.0.${i % 4}`),
      ),
    );
    clearInterval(timer);
    expect(results.filter(Boolean)).toHaveLength(20);
    expect(results.every((ok, i) => ok === (i % 2 === 0))).toBe(true);
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(MAX_CONCURRENT_HASHES);
    expect(hashLoad()).toEqual({ running: 0, waiting: 0, sources: 0 });
  });
});

describe('password file parsing', () => {
  const good = `$7$101$${Buffer.alloc(12, 1).toString('base64')}$${Buffer.alloc(64, 2).toString('base64')}`;

  it('skips comments, blank lines and CRLF endings', () => {
    const users = parsePasswordFile(`# users\n\n  \r\nalice:${good}\r\n#bob:x\n`, 'f');
    expect([...users.keys()]).toEqual(['alice']);
    expect(users.get('alice')!.line).toBe(4);
  });

  const bad: Array<[string, string, RegExp]> = [
    ['no colon', 'alice', /no colon/],
    ['plain text', 'alice:secret', /plain text.*passwd -U/],
    ['empty user', `:${good}`, /empty user name/],
    ['empty hash', 'alice:', /no password hash/],
    ['unknown type', 'alice:$5$abc$def', /unknown hash type/],
    ['iterations 0', `alice:${good.replace('$101$', '$0$')}`, /iteration count 0/],
    ['iterations huge', `alice:${good.replace('$101$', '$99999999$')}`, /iteration count/],
    ['iterations text', `alice:${good.replace('$101$', '$1e3$')}`, /not a number/],
    ['bad base64 salt', `alice:$7$101$@@@@$${Buffer.alloc(64).toString('base64')}`, /salt/],
    ['short hash', `alice:$7$101$AAAA$${Buffer.alloc(32).toString('base64')}`, /64 bytes/],
    ['too few fields', 'alice:$7$101$AAAA', /form/],
    ['$6$ too many fields', 'alice:$6$AAAA$BBBB$CCCC', /form/],
    ['extra colon', `alice:${good}:x`, /more than one ':'/],
  ];
  for (const [name, line, message] of bad) {
    it(`refuses ${name} with file:line`, () => {
      const e = errorOf(() => parsePasswordFile(`# header\n${line}\n`, '/etc/pw'));
      expect(e.file).toBe('/etc/pw');
      expect(e.line).toBe(2);
      expect(e.key).toBe('password_file');
      expect(e.message).toMatch(/^\/etc\/pw:2: password_file: /);
      expect(e.message).toMatch(message);
    });
  }

  it('refuses a user listed twice, naming both lines', () => {
    const e = errorOf(() => parsePasswordFile(`a:${good}\nb:${good}\na:${good}\n`, 'f'));
    expect(e.line).toBe(3);
    expect(e.message).toMatch(/first on line 1/);
  });

  it('survives hostile input: binary garbage, a huge line, many colons', () => {
    const garbage = Buffer.from(randomBytes(4096)).toString('latin1');
    expect(() => parsePasswordFile(garbage, 'g')).toThrow(ConfigError);
    expect(() => parsePasswordFile(`${'u'.repeat(70_000)}:${good}`, 'g')).toThrow(/longer than 65535/);
    expect(() => parsePasswordFile(`u:${'$'.repeat(70_000)}`, 'g')).toThrow(/too long/);
    expect(() => parsePasswordFile(':'.repeat(10_000), 'g')).toThrow(ConfigError);
  });

  it('arbitrary text (fast-check) parses or throws ConfigError, nothing else', () => {
    const line = fc.oneof(
      fc.string({ maxLength: 30 }),
      fc
        .tuple(
          fc.string({ maxLength: 8 }),
          fc.constantFrom('$6$', '$7$', '$7$1$', '$7$101$'),
          fc.base64String({ maxLength: 90 }),
        )
        .map(([u, t, b]) => `${u}:${t}${b}$${b}`),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 6 }), (lines) => {
        try {
          parsePasswordFile(lines.join('\n'), 'f');
        } catch (err) {
          expect(err).toBeInstanceOf(ConfigError);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('refuses a file over the size bound before reading it', async () => {
    const big = tmp('big');
    writeFileSync(big, '');
    truncateSync(big, MAX_PASSWORD_FILE_BYTES + 1);
    await expect(PasswordFile.load(big)).rejects.toThrow(/password_file: file is larger than/);
  });

  it('reports a missing or unreadable file as a ConfigError naming it', async () => {
    await expect(PasswordFile.load(join(dir, 'nope'))).rejects.toThrow(
      /nope: password_file: cannot read the file \(ENOENT\)/,
    );
    await expect(PasswordFile.load(dir)).rejects.toThrow(/not a regular file/);
  });
});

describe('authenticator', () => {
  it('applies allow_anonymous and checks passwords; a certificate CN is no password (issue 12.1)', async () => {
    const h = await hashPassword('right', { iterations: 10 });
    const passwords = PasswordFile.parse(`alice:${h}\n`, 'f');
    const strict = createAuthenticator({ allowAnonymous: false, passwords });
    const req = (username?: string, password?: string, cn?: string) => ({
      clientId: 'c',
      username,
      password: password === undefined ? undefined : bytes(password),
      certificateCommonName: cn,
    });
    expect(await strict.authenticate(req())).toBe(false);
    expect(await strict.authenticate(req('alice', 'right'))).toBe(true);
    expect(await strict.authenticate(req('alice', 'wrong'))).toBe(false);
    expect(await strict.authenticate(req('alice'))).toBe(false);
    // An empty password is none: Mosquitto 2.0 refuses it (issue 15's differential suite).
    const empty = PasswordFile.parse(`e:${await hashPassword('', { iterations: 3 })}\n`, 'f');
    expect(await empty.verify('e', new Uint8Array(0))).toBe(false);
    expect(await empty.verify('e', undefined)).toBe(false);
    expect(await strict.authenticate(req('mallory', 'right'))).toBe(false);
    // A verified certificate whose CN is the user name does not replace the password.
    expect(await strict.authenticate(req('alice', undefined, 'alice'))).toBe(false);
    expect(await strict.authenticate(req('alice', 'wrong', 'alice'))).toBe(false);
    expect(await strict.authenticate(req('alice', 'right', 'alice'))).toBe(true);
    expect(await strict.authenticate(req('device-7', undefined, 'device-7'))).toBe(false);
    const open = createAuthenticator({ allowAnonymous: true, passwords });
    expect(await open.authenticate(req())).toBe(true);
    expect(await open.authenticate(req('alice', 'wrong'))).toBe(false);
    // No password file and anonymous refused: nobody (Mosquitto would admit any user name).
    const none = createAuthenticator({ allowAnonymous: false });
    expect(await none.authenticate(req('alice', 'right'))).toBe(false);
    expect(await createAuthenticator({ allowAnonymous: true }).authenticate(req('x', 'y'))).toBe(true);
  });
});

describe('broker-lite passwd', () => {
  it('creates with -c (mode 0600), adds, updates, deletes, keeping comments', async () => {
    const file = tmp('pw');
    let t = io();
    expect(await runPasswd(['-c', '-b', file, 'alice', 'a1'], t.io)).toBe(0);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    writeFileSync(file, `# site users\n${readFileSync(file, 'utf8')}`);
    expect(await runPasswd(['-b', file, 'bob', 'b1'], io().io)).toBe(0);
    const before = PasswordFile.parse(readFileSync(file, 'utf8'), file);
    expect(await before.verify('alice', bytes('a1'))).toBe(true);
    expect(await runPasswd(['-b', file, 'alice', 'a2'], io().io)).toBe(0);
    let f = await PasswordFile.load(file);
    expect(await f.verify('alice', bytes('a2'))).toBe(true);
    expect(await f.verify('alice', bytes('a1'))).toBe(false);
    expect(await f.verify('bob', bytes('b1'))).toBe(true);
    expect(await runPasswd(['-D', file, 'bob'], io().io)).toBe(0);
    f = await PasswordFile.load(file);
    expect([...f.users.keys()]).toEqual(['alice']);
    expect(readFileSync(file, 'utf8').startsWith('# site users\n')).toBe(true);
    t = io();
    expect(await runPasswd(['-D', file, 'bob'], t.io)).toBe(1);
    expect(t.err()).toMatch(/not found/);
    // -c overwrites an existing file, as mosquitto_passwd does.
    expect(await runPasswd(['-c', '-b', file, 'carol', 'c1'], io().io)).toBe(0);
    expect([...(await PasswordFile.load(file)).users.keys()]).toEqual(['carol']);
  });

  it('reads the password twice from a non-terminal stdin and refuses a mismatch', async () => {
    const file = tmp('pw');
    let t = io('s3cret\ns3cret\n');
    expect(await runPasswd(['-c', file, 'dave'], t.io)).toBe(0);
    expect(t.out()).toMatch(/Password: [\s\S]*Reenter password: /);
    expect(await (await PasswordFile.load(file)).verify('dave', bytes('s3cret'))).toBe(true);
    t = io('one\ntwo\n');
    expect(await runPasswd([file, 'dave'], t.io)).toBe(1);
    expect(t.err()).toMatch(/do not match/);
    expect(await (await PasswordFile.load(file)).verify('dave', bytes('s3cret'))).toBe(true);
    t = io('');
    expect(await runPasswd([file, 'erin'], t.io)).toBe(1);
    expect(t.err()).toMatch(/no password/);
  });

  it('refuses bad usage with exit 1 and a message', async () => {
    const file = tmp('pw');
    const cases: Array<[string[], RegExp]> = [
      [['-b', file, 'u', 'p'], /cannot open password file.*ENOENT/],
      [['-c', '-b', file, 'a:b', 'p'], /':'/],
      [['-c', '-b', file, '', 'p'], /empty/],
      [['-c', '-D', file, 'u'], /-c and -D/],
      [['-x', file, 'u'], /unknown option -x/],
      [['-b', file, 'u'], /-b needs FILE USER PASSWORD/],
      [['-H', 'md5', file, 'u'], /-H takes/],
      [['-I', '0', file, 'u'], /-I takes/],
      [[], /Usage/],
    ];
    for (const [args, message] of cases) {
      const t = io();
      expect(await runPasswd(args, t.io), args.join(' ')).toBe(1);
      expect(t.err(), args.join(' ')).toMatch(message);
    }
    expect(existsSync(file)).toBe(false);
  });

  it('updates the file behind a symlink and keeps an existing mode', async () => {
    const real = tmp('real-pw');
    const link = tmp('link-pw');
    expect(await runPasswd(['-c', '-b', real, 'a', '1'], io().io)).toBe(0);
    chmodSync(real, 0o640);
    symlinkSync(real, link);
    expect(await runPasswd(['-b', link, 'b', '2'], io().io)).toBe(0);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(statSync(real).mode & 0o777).toBe(0o640);
    expect([...(await PasswordFile.load(real)).users.keys()]).toEqual(['a', 'b']);
  });

  it('-U hashes plain-text passwords and leaves hashed ones alone', async () => {
    const file = tmp('pw');
    const hashed = await hashPassword('kept', { iterations: 5 });
    writeFileSync(file, `# plain\nann:plain pass\nben:${hashed}\n`);
    expect(await runPasswd(['-U', file], io().io)).toBe(0);
    const f = await PasswordFile.load(file);
    expect(await f.verify('ann', bytes('plain pass'))).toBe(true);
    expect(await f.verify('ben', bytes('kept'))).toBe(true);
    expect(readFileSync(file, 'utf8')).toContain(`ben:${hashed}`);
  });

  it.skipIf(!hasPasswdTool)(
    'mosquitto_passwd can update a file we wrote, and we can read the result',
    async () => {
      const file = tmp('pw');
      expect(await runPasswd(['-c', '-b', file, 'ours', 'o1'], io().io)).toBe(0);
      execFileSync(MOSQUITTO_PASSWD, ['-b', file, 'theirs', 't1']);
      const f = await PasswordFile.load(file);
      expect(await f.verify('ours', bytes('o1'))).toBe(true);
      expect(await f.verify('theirs', bytes('t1'))).toBe(true);
    },
  );
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

describe.skipIf(!hasMosquitto)('real Mosquitto reads what `broker-lite passwd` writes', () => {
  it('accepts the right password and refuses a wrong one ($7$ default and $6$)', async () => {
    const file = tmp('pw');
    expect(await runPasswd(['-c', '-b', file, 'alice', 'correct horse'], io().io)).toBe(0);
    expect(await runPasswd(['-H', 'sha512', '-b', file, 'old', 'legacy'], io().io)).toBe(0);
    const port = await freePort();
    const conf = tmp('mosquitto.conf');
    writeFileSync(
      conf,
      [
        `listener ${port} 127.0.0.1`,
        'allow_anonymous false',
        `password_file ${file}`,
        'user root',
        'log_dest stderr',
        'log_type all',
        'persistence false',
        '',
      ].join('\n'),
    );
    const broker = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    try {
      await new Promise<void>((resolve, reject) => {
        let log = '';
        const timer = setTimeout(() => reject(new Error(`mosquitto did not start: ${log}`)), 10_000);
        broker.stderr.on('data', (d: Buffer) => {
          log += d.toString();
          if (/running/.test(log)) {
            clearTimeout(timer);
            resolve();
          }
        });
        broker.once('exit', (code) => reject(new Error(`mosquitto exited ${code}: ${log}`)));
      });
      const pub = (user: string, password: string) =>
        spawnSync(
          MOSQUITTO_PUB,
          [
            '-h',
            '127.0.0.1',
            '-p',
            String(port),
            '-u',
            user,
            '-P',
            password,
            '-t',
            't',
            '-m',
            'x',
            '-q',
            '1',
          ],
          { encoding: 'utf8', timeout: 10_000 },
        );
      expect(pub('alice', 'correct horse').status).toBe(0);
      const refused = pub('alice', 'correct horsf');
      expect(refused.status).not.toBe(0);
      expect(refused.stderr).toMatch(/not authori[sz]ed/i);
      expect(pub('old', 'legacy').status).toBe(0);
      expect(pub('old', 'Legacy').status).not.toBe(0);
    } finally {
      broker.kill('SIGTERM');
    }
  });
});
