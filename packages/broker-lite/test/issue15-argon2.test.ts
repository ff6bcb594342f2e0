/**
 * Issue 15.2: `$argon2id$` password hashes (mosquitto_passwd 2.1's default): verified, written
 * by `broker-lite passwd -H argon2id`, computed off the event loop through the login queue.
 * Cross-checked with Debian's python3-argon2 (libargon2, the reference implementation).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { argon2id } from '@noble/hashes/argon2.js';
import { afterEach, describe, expect, it } from 'vitest';
import { ARGON2_DEFAULTS, argon2Workers, parseArgon2 } from '../src/argon2.ts';
import { hashLoad, hashPassword, PasswordFile, parseHash, verifyHash } from '../src/passwd.ts';
import { runPasswd } from '../src/password-cli.ts';
import { RawClient, startBroker, type TestBroker } from './helpers/raw-client.ts';

const PYTHON = '/usr/bin/python3';
const hasPythonArgon2 = ((): boolean => {
  try {
    execFileSync(PYTHON, ['-c', 'import argon2'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

const brokers: TestBroker[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const b of brokers.splice(0)) await b.close();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s/g, ''), 'hex'));

describe('issue 15.2: argon2id password hashes', () => {
  it('issue 15.2: RFC 9106 section 5.3 (Argon2id) test vector', () => {
    const tag = argon2id(new Uint8Array(32).fill(1), new Uint8Array(16).fill(2), {
      t: 3,
      m: 32,
      p: 4,
      dkLen: 32,
      key: new Uint8Array(8).fill(3),
      personalization: new Uint8Array(12).fill(4),
    });
    expect(Buffer.from(tag)).toEqual(
      Buffer.from(
        hex(
          '0d 64 0d f5 8d 78 76 6c 08 c0 37 a3 4a 8b 53 c9 d0 1e f0 45 2d 75 b6 5e b5 25 20 e9 6b 01 e6 59',
        ),
      ),
    );
  });

  it("issue 15.2: the reference implementation's vector, through the broker's path (worker, login queue)", async () => {
    // phc-winner-argon2's argon2id v=19 t=2 m=65536 p=1 "password" "somesalt"
    const h = parseHash(
      '$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc',
    );
    expect(typeof h).not.toBe('string');
    const ok = verifyHash(h as never, Buffer.from('password'));
    // admitted by the login queue like a PBKDF2 hash
    expect(hashLoad().running).toBe(1);
    expect(await ok).toBe(true);
    expect(await verifyHash(h as never, Buffer.from('passwore'))).toBe(false);
    expect(argon2Workers()).toBeGreaterThanOrEqual(1);
  });

  it('issue 15.2: parse bounds: version, parameters, sizes; malformed is a message, not a throw', () => {
    const salt = 'c29tZXNhbHQ';
    const tag = 'CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc';
    const bad = [
      `$argon2id$v=16$m=65536,t=2,p=1$${salt}$${tag}`,
      `$argon2id$v=19$m=262144,t=2,p=1$${salt}$${tag}`, // 256 MiB: over the 128 MiB bound
      `$argon2id$v=19$m=65536,t=11,p=1$${salt}$${tag}`,
      `$argon2id$v=19$m=65536,t=2,p=17$${salt}$${tag}`,
      `$argon2id$v=19$m=7,t=2,p=1$${salt}$${tag}`,
      `$argon2id$v=19$m=65536,t=2$${salt}$${tag}`,
      `$argon2id$v=19$m=65536,t=2,p=1$${salt}=$${tag}`,
      `$argon2id$v=19$m=65536,t=2,p=1$c29t$${tag}`, // 3-byte salt
      `$argon2id$v=19$m=65536,t=2,p=1$${salt}`,
      `$argon2id$v=19$m=99999999999,t=2,p=1$${salt}$${tag}`,
      '$argon2i$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$x',
    ];
    for (const v of bad) expect(typeof parseHash(v), v).toBe('string');
    expect(parseArgon2(`$argon2id$v=19$m=65536,t=2,p=1$${salt}$${tag}`)).toMatchObject({
      m: 65_536,
      t: 2,
      p: 1,
    });
  });

  it('issue 15.2: hashing does not block the event loop (two at once; the loop ticks every few ms)', async () => {
    const h = parseHash(await hashPassword('x', { algorithm: 'argon2id' }));
    let last = performance.now();
    let worst = 0;
    const tick = setInterval(() => {
      const now = performance.now();
      worst = Math.max(worst, now - last);
      last = now;
    }, 2);
    const t0 = performance.now();
    const results = await Promise.all([
      verifyHash(h as never, Buffer.from('x'), '10.0.0.1'),
      verifyHash(h as never, Buffer.from('y'), '10.0.0.2'),
    ]);
    const took = performance.now() - t0;
    clearInterval(tick);
    expect(results).toEqual([true, false]);
    // the hashes took far longer than any pause of the loop
    expect(took).toBeGreaterThan(50);
    expect(worst).toBeLessThan(50);
  });

  it.skipIf(!hasPythonArgon2)(
    'issue 15.2: python3-argon2 (libargon2) hashes verify here, ours verify there (Mosquitto 2.1 parameters)',
    async () => {
      const theirs = execFileSync(
        PYTHON,
        [
          '-c',
          'import argon2,sys; print(argon2.PasswordHasher(time_cost=1, memory_cost=47104, parallelism=1, hash_len=64, salt_len=64).hash(sys.argv[1]))',
          'sécret pass',
        ],
        { encoding: 'utf8' },
      ).trim();
      expect(theirs.startsWith('$argon2id$v=19$m=47104,t=1,p=1$')).toBe(true);
      const file = PasswordFile.parse(`alice:${theirs}\n`, 'passwd');
      expect(await file.verify('alice', Buffer.from('sécret pass'))).toBe(true);
      expect(await file.verify('alice', Buffer.from('secret pass'))).toBe(false);
      const ours = await hashPassword('sécret pass', { algorithm: 'argon2id' });
      expect(ours).toMatch(/^\$argon2id\$v=19\$m=47104,t=1,p=1\$[A-Za-z0-9+/]{86}\$[A-Za-z0-9+/]{86}$/);
      const verify = (pw: string): string =>
        execFileSync(
          PYTHON,
          [
            '-c',
            'import argon2,sys\ntry:\n  print(argon2.PasswordHasher().verify(sys.argv[1], sys.argv[2]))\nexcept argon2.exceptions.VerifyMismatchError:\n  print("mismatch")',
            ours,
            pw,
          ],
          { encoding: 'utf8' },
        ).trim();
      expect(verify('sécret pass')).toBe('True');
      expect(verify('other')).toBe('mismatch');
    },
  );

  it('issue 15.2: broker-lite passwd -H argon2id writes a file the broker logs in with', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bl-argon2-'));
    dirs.push(dir);
    const file = path.join(dir, 'passwd');
    const out: string[] = [];
    const io = {
      stdin: process.stdin,
      stdout: { write: (s: string) => out.push(s) },
      stderr: { write: (s: string) => out.push(s) },
    };
    expect(await runPasswd(['-H', 'argon2id', '-c', '-b', file, 'dev', 'pw1'], io)).toBe(0);
    expect(await runPasswd(['-H', 'argon2', '-b', file, 'dev2', 'pw2'], io)).toBe(0);
    const text = fs.readFileSync(file, 'utf8');
    expect(text).toMatch(/^dev:\$argon2id\$v=19\$m=47104,t=1,p=1\$/m);
    expect(text).toMatch(/^dev2:\$argon2id\$/m);
    const passwords = await PasswordFile.load(file);
    const b = await startBroker({
      allowAnonymous: false,
      authenticator: { authenticate: (r) => passwords.verify(r.username ?? '', r.password, r.remoteAddress) },
    });
    brokers.push(b);
    const ok = await RawClient.connect(b.port, {
      clientId: 'a2',
      username: 'dev',
      password: Buffer.from('pw1'),
    });
    expect(ok.connack.reasonCode).toBe(0);
    ok.client.close();
    const no = await RawClient.connect(b.port, {
      clientId: 'a3',
      username: 'dev',
      password: Buffer.from('pw2'),
    });
    expect(no.connack.reasonCode).toBe(5);
    // an unknown user pays for an argon2id hash too (the decoy follows the file's hashes)
    expect(passwords.decoy.kind).toBe('argon2id');
    expect(ARGON2_DEFAULTS.m).toBe(47_104);
  });
});
