import {
  chownSync,
  closeSync,
  fsyncSync,
  openSync,
  realpathSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { DEFAULT_ITERATIONS, type HashOptions, hashPassword, MAX_ITERATIONS, parseHash } from './passwd.ts';

/** Where `broker-lite passwd` talks; tests substitute their own. */
export interface PasswdIo {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
}

export const PASSWD_USAGE = `broker-lite passwd: manage mosquitto_passwd-format password files

Usage: broker-lite passwd [-H sha512-pbkdf2|argon2id|sha512] [-I ITERATIONS] [-c | -D] FILE USER
       broker-lite passwd [-H sha512-pbkdf2|argon2id|sha512] [-I ITERATIONS] [-c] -b FILE USER PASSWORD
       broker-lite passwd -U FILE

 -b  batch mode: the password is the last argument (it shows in ps and shell history)
 -c  create a new file; an existing file is overwritten (as mosquitto_passwd does)
 -D  delete USER from FILE
 -U  hash every plain-text password in FILE (USER:PASSWORD lines)
 -H  sha512-pbkdf2 ($7$, default: Mosquitto 2.0 reads it), argon2id (Mosquitto 2.1's default:
     46 MiB, 1 pass, 1 lane; Mosquitto 2.0 cannot read it) or sha512 ($6$, Mosquitto 1.x)
 -I  PBKDF2 iterations (default ${DEFAULT_ITERATIONS}; Mosquitto 2.0 uses 101)

Without -b the password is asked twice, without echo on a terminal.
Files are written atomically with mode 0600 (an existing file keeps its mode and owner).
The output is read by Mosquitto 2.x as well as broker-lite (12-byte salts).

Examples:
  broker-lite passwd -c /etc/mosquitto/passwd alice
  broker-lite passwd -b /etc/mosquitto/passwd bob 's3cret'
  broker-lite passwd -D /etc/mosquitto/passwd bob
`;

class UsageError extends Error {}

interface PasswdArgs {
  create: boolean;
  batch: boolean;
  remove: boolean;
  update: boolean;
  hash: HashOptions;
  positional: string[];
}

function parseArgs(argv: string[]): PasswdArgs {
  const a: PasswdArgs = {
    create: false,
    batch: false,
    remove: false,
    update: false,
    hash: {},
    positional: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '-c') a.create = true;
    else if (arg === '-b') a.batch = true;
    else if (arg === '-D') a.remove = true;
    else if (arg === '-U') a.update = true;
    else if (arg === '-H') {
      const v = argv[++i];
      // `argon2` is how mosquitto_passwd 2.1's usage names it, `argon2id` what it parses
      if (v === 'argon2' || v === 'argon2id') a.hash.algorithm = 'argon2id';
      else if (v === 'sha512-pbkdf2' || v === 'sha512') a.hash.algorithm = v;
      else throw new UsageError('-H takes sha512-pbkdf2, argon2id or sha512');
    } else if (arg === '-I') {
      const v = argv[++i] ?? '';
      const n = Number(v);
      if (!/^[0-9]+$/.test(v) || n < 1 || n > MAX_ITERATIONS) {
        throw new UsageError(`-I takes an iteration count 1..${MAX_ITERATIONS}`);
      }
      a.hash.iterations = n;
    } else if (arg === '--') {
      a.positional.push(...argv.slice(i + 1));
      break;
    } else if (arg.startsWith('-') && arg.length > 1) throw new UsageError(`unknown option ${arg}`);
    else a.positional.push(arg);
  }
  if (a.create && a.remove) throw new UsageError('-c and -D cannot be used together');
  if (a.update) {
    if (a.create || a.remove || a.batch || a.positional.length !== 1)
      throw new UsageError('-U takes only FILE');
  } else if (a.remove) {
    if (a.batch || a.positional.length !== 2) throw new UsageError('-D takes FILE USER');
  } else if (a.positional.length !== (a.batch ? 3 : 2)) {
    throw new UsageError(a.batch ? '-b needs FILE USER PASSWORD' : 'expected FILE USER');
  }
  return a;
}

function checkUsername(user: string): void {
  if (user === '') throw new UsageError('the user name must not be empty');
  if (user.includes(':')) throw new UsageError("the user name must not contain the ':' character");
  if (/[\r\n\0]/.test(user)) throw new UsageError('the user name must not contain control characters');
  if (Buffer.byteLength(user) > 65_535) throw new UsageError('the user name is longer than 65535 bytes');
}

/** The user name on a password-file line, or undefined for comments and blank lines. */
function lineUser(line: string): string | undefined {
  const t = line.trim();
  if (t === '' || t.startsWith('#')) return undefined;
  const colon = line.indexOf(':');
  return (colon < 0 ? line : line.slice(0, colon)).trim();
}

/** Writes `text` to `file` atomically: a temporary file in the same directory, fsync, rename. */
export function writeFileAtomic(target: string, text: string): void {
  let file = target;
  try {
    // Through a symlink (/etc/mosquitto/passwd -> /data/passwd) the link stays a link.
    file = realpathSync(target);
  } catch {
    // A new file.
  }
  let mode = 0o600;
  let owner: { uid: number; gid: number } | undefined;
  try {
    const st = statSync(file);
    mode = st.mode & 0o777;
    owner = { uid: st.uid, gid: st.gid };
  } catch {
    // A new file.
  }
  const tmp = resolve(dirname(file), `.${process.pid}.${Date.now()}.passwd.tmp`);
  const fd = openSync(tmp, 'wx', mode);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    unlinkSync(tmp);
    throw err;
  }
  closeSync(fd);
  if (owner && typeof process.getuid === 'function' && process.getuid() === 0) {
    try {
      chownSync(tmp, owner.uid, owner.gid);
    } catch {
      // Keep going: the mode still protects the file.
    }
  }
  renameSync(tmp, file);
  try {
    const dfd = openSync(dirname(file), 'r');
    fsyncSync(dfd);
    closeSync(dfd);
  } catch {
    // Not every file system lets a directory be fsynced.
  }
}

/** Reads one line from a non-terminal stdin. */
function lineReader(stdin: NodeJS.ReadableStream): () => Promise<string | undefined> {
  const rl = createInterface({ input: stdin, terminal: false, crlfDelay: Number.POSITIVE_INFINITY });
  const it = rl[Symbol.asyncIterator]();
  return async () => {
    const r = await it.next();
    if (r.done) {
      rl.close();
      return undefined;
    }
    return r.value;
  };
}

/** Reads a line from a terminal without echoing it. */
function readHidden(io: PasswdIo, prompt: string): Promise<string | undefined> {
  const stdin = io.stdin;
  // Echo goes off before the prompt shows: a fast typist (or a script) answering the prompt
  // must not see the password on the screen.
  stdin.setRawMode?.(true);
  io.stdout.write(prompt);
  return new Promise((resolvePromise, reject) => {
    let value = '';
    stdin.resume();
    const done = (result: string | undefined, err?: Error): void => {
      stdin.removeListener('data', onData);
      stdin.setRawMode?.(false);
      stdin.pause();
      io.stdout.write('\n');
      if (err) reject(err);
      else resolvePromise(result);
    };
    const onData = (chunk: Buffer | string): void => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          done(value);
          return;
        }
        if (ch === '\u0003') {
          done(undefined, new UsageError('interrupted'));
          return;
        }
        if (ch === '\u0004') {
          done(value === '' ? undefined : value);
          return;
        }
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
    };
    stdin.on('data', onData);
  });
}

async function askPassword(io: PasswdIo): Promise<string> {
  const tty = io.stdin.isTTY === true && typeof io.stdin.setRawMode === 'function';
  const next = tty ? undefined : lineReader(io.stdin);
  const read = async (prompt: string): Promise<string | undefined> => {
    if (tty) return readHidden(io, prompt);
    io.stdout.write(`${prompt}\n`);
    return next!();
  };
  const first = await read('Password: ');
  if (first === undefined) throw new UsageError('no password given');
  const second = await read('Reenter password: ');
  if (second === undefined) throw new UsageError('no password given');
  if (first !== second) throw new UsageError('passwords do not match');
  return first;
}

/** Runs `broker-lite passwd ARGS`; returns the exit code (0 ok, 1 error, as mosquitto_passwd). */
export async function runPasswd(argv: string[], io: PasswdIo): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h') || argv.length === 0) {
    (argv.length === 0 ? io.stderr : io.stdout).write(PASSWD_USAGE);
    return argv.length === 0 ? 1 : 0;
  }
  try {
    const a = parseArgs(argv);
    const file = a.positional[0];
    let lines: string[] = [];
    if (!a.create) {
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (err) {
        throw new UsageError(
          `cannot open password file ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
        );
      }
      lines = text.split('\n');
      if (lines[lines.length - 1] === '') lines.pop();
    }
    if (a.update) {
      for (let i = 0; i < lines.length; i++) {
        const user = lineUser(lines[i]);
        if (user === undefined) continue;
        const colon = lines[i].indexOf(':');
        if (colon < 0) throw new UsageError(`${file}:${i + 1}: no ':' on this line`);
        const value = lines[i].slice(colon + 1).replace(/\r$/, '');
        if (typeof parseHash(value.trim()) !== 'string') continue;
        if (value.startsWith('$')) throw new UsageError(`${file}:${i + 1}: ${parseHash(value.trim())}`);
        lines[i] = `${user}:${await hashPassword(value, a.hash)}`;
      }
      writeFileAtomic(file, lines.length ? `${lines.join('\n')}\n` : '');
      return 0;
    }
    const user = a.positional[1];
    checkUsername(user);
    const index = lines.findIndex((l) => lineUser(l) === user);
    if (a.remove) {
      if (index < 0) {
        io.stderr.write(`Warning: user ${user} not found in ${file}\n`);
        return 1;
      }
      lines.splice(index, 1);
    } else {
      const password = a.batch ? a.positional[2] : await askPassword(io);
      if (/[\r\n]/.test(password)) throw new UsageError('the password must not contain a line break');
      const entry = `${user}:${await hashPassword(password, a.hash)}`;
      if (index < 0) lines.push(entry);
      else lines[index] = entry;
    }
    writeFileAtomic(file, lines.length ? `${lines.join('\n')}\n` : '');
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`Error: ${err.message}\n`);
      if (/^(unknown option|expected|-[a-zA-Z])/.test(err.message)) io.stderr.write('\n' + PASSWD_USAGE);
      return 1;
    }
    io.stderr.write(`Error: ${(err as Error).message}\n`);
    return 1;
  }
}
