import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { PasswordFile } from '../src/passwd.ts';

const PYTHON = '/usr/bin/python3';
const hasPython = existsSync(PYTHON);
if (!hasPython)
  console.warn(`skipping the terminal prompt test: ${PYTHON} (for its pty module) is not installed`);

const BIN = fileURLToPath(new URL('../bin/broker-lite.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'bl-tty-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Runs `broker-lite passwd` on a pseudo-terminal, answers each prompt, and prints everything the
// terminal showed. Python's pty module is the simplest pty available without a native addon.
const DRIVER = `
import os, pty, sys, select, time
argv = sys.argv[1:]
answers = [a.encode() for a in os.environ['ANSWERS'].split('|')]
pid, fd = pty.fork()
if pid == 0:
    os.execv(argv[0], argv)
seen = b''
deadline = time.time() + 20
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.5)
    if not r:
        continue
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
    if answers and seen.count(b'assword: ') > (2 - len(answers)) and seen.endswith(b'assword: '):
        os.write(fd, answers.pop(0) + b'\\r')
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode('utf-8', 'replace'))
sys.exit(os.waitstatus_to_exitcode(status))
`;

function onTty(args: string[], answers: string[]): { code: number | null; screen: string } {
  const r = spawnSync(PYTHON, ['-c', DRIVER, process.execPath, BIN, ...args], {
    env: { ...process.env, ANSWERS: answers.join('|') },
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { code: r.status, screen: r.stdout };
}

describe.skipIf(!hasPython)('broker-lite passwd on a terminal', () => {
  it('asks twice without echoing the password', async () => {
    const file = join(dir, 'pw');
    const r = onTty(['passwd', '-c', file, 'alice'], ['tty-Secret-1', 'tty-Secret-1']);
    expect(r.code).toBe(0);
    expect(r.screen).toMatch(/Password: [\s\S]*Reenter password: /);
    expect(r.screen).not.toContain('tty-Secret-1');
    const f = await PasswordFile.load(file);
    expect(await f.verify('alice', new TextEncoder().encode('tty-Secret-1'))).toBe(true);
  });

  it('refuses two different answers and leaves the file alone', async () => {
    const file = join(dir, 'pw');
    const r = onTty(['passwd', file, 'alice'], ['one-thing', 'another']);
    expect(r.code).toBe(1);
    expect(r.screen).toMatch(/do not match/);
    const f = await PasswordFile.load(file);
    expect(await f.verify('alice', new TextEncoder().encode('tty-Secret-1'))).toBe(true);
  });
});
