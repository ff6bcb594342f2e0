import { createHash, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { constants } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { ARGON2_DEFAULTS, type Argon2Hash, argon2idRaw, formatArgon2, parseArgon2 } from './argon2.ts';
import { ConfigError } from './config-error.ts';
import { sourceKey, withHashSlot } from './login-queue.ts';
import type { Authenticator } from './options.ts';

/**
 * `mosquitto_passwd` files: one `user:hash` per line.
 *   $7$ITERATIONS$SALT$HASH  PBKDF2-HMAC-SHA512 (Mosquitto 2.x; 2.0 writes 12-byte salts and
 *                           101 iterations, 2.1 64-byte salts and 1000)
 *   $6$SALT$HASH             SHA-512 over password then salt (Mosquitto 1.x)
 *   $argon2id$v=19$...       Argon2id (Mosquitto 2.1's default; argon2.ts)
 * SALT and HASH of $7$ and $6$ are standard base64 with padding; HASH is 64 bytes.
 */
export type PasswordHash =
  | { kind: 'pbkdf2-sha512'; iterations: number; salt: Buffer; hash: Buffer }
  | { kind: 'sha512'; salt: Buffer; hash: Buffer }
  | Argon2Hash;

/** What `broker-lite passwd` writes: 12-byte salts keep the file readable by Mosquitto 2.0.x. */
export const DEFAULT_ITERATIONS = 1000;
export const DEFAULT_SALT_BYTES = 12;
/** A per-login cost bound: a file with a billion iterations must not stall every CONNECT. */
export const MAX_ITERATIONS = 1_000_000;
const MAX_SALT_BYTES = 1024;
const HASH_BYTES = 64;
/** Mosquitto's bound on user names and passwords. */
const MAX_FIELD = 65_535;
/** Bounds the file we read into memory (a million users is about 150 MB of hashes). */
export const MAX_PASSWORD_FILE_BYTES = 64 * 1024 * 1024;

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function decodeBase64(s: string): Buffer | null {
  if (s.length === 0 || !BASE64.test(s)) return null;
  return Buffer.from(s, 'base64');
}

/** Why `value` is not a usable hash, or the hash. */
export function parseHash(value: string): PasswordHash | string {
  const parts = value.split('$');
  // A leading '$' gives an empty first part.
  if (parts[0] !== '' || parts.length < 2) {
    return 'the password is not hashed (plain text); hash the file with `broker-lite passwd -U FILE`';
  }
  const kind = parts[1];
  if (kind === 'argon2id') return parseArgon2(value);
  if (kind === '7') {
    if (parts.length !== 5) return 'a $7$ hash has the form $7$ITERATIONS$SALT$HASH';
    const itText = parts[2];
    if (!/^[0-9]{1,10}$/.test(itText)) return `iteration count '${itText.slice(0, 20)}' is not a number`;
    const iterations = Number(itText);
    if (iterations < 1 || iterations > MAX_ITERATIONS)
      return `iteration count ${iterations} is outside 1..${MAX_ITERATIONS}`;
    const salt = decodeBase64(parts[3]);
    if (salt === null || salt.length > MAX_SALT_BYTES) return 'the salt is not valid base64';
    const hash = decodeBase64(parts[4]);
    if (hash === null || hash.length !== HASH_BYTES) return 'the hash is not 64 bytes of base64';
    return { kind: 'pbkdf2-sha512', iterations, salt, hash };
  }
  if (kind === '6') {
    if (parts.length !== 4) return 'a $6$ hash has the form $6$SALT$HASH';
    const salt = decodeBase64(parts[2]);
    if (salt === null || salt.length > MAX_SALT_BYTES) return 'the salt is not valid base64';
    const hash = decodeBase64(parts[3]);
    if (hash === null || hash.length !== HASH_BYTES) return 'the hash is not 64 bytes of base64';
    return { kind: 'sha512', salt, hash };
  }
  return `unknown hash type '$${kind.slice(0, 10)}$' (expected $argon2id$, $7$ or $6$)`;
}

export interface PasswordLine {
  line: number;
  username: string;
  hash: PasswordHash;
}

/**
 * Parses a password file. A malformed line is an error naming file:line rather than a skipped
 * user (Mosquitto logs and drops it): a user who silently cannot log in after an edit is
 * harder to diagnose than a broker that refuses to start, and on SIGHUP the old file stays.
 * Blank lines and lines starting with `#` are ignored.
 */
export function parsePasswordFile(text: string, file: string): Map<string, PasswordLine> {
  const users = new Map<string, PasswordLine>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const raw = lines[i].endsWith('\r') ? lines[i].slice(0, -1) : lines[i];
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const fail = (what: string): never => {
      throw new ConfigError(file, lineNo, 'password_file', what);
    };
    const colon = raw.indexOf(':');
    if (colon < 0) fail('expected USER:HASH (no colon on this line)');
    const username = raw.slice(0, colon).trim();
    const value = raw.slice(colon + 1).trim();
    if (username === '') fail('empty user name');
    if (username.length > MAX_FIELD) fail('user name longer than 65535 characters');
    if (value.length > MAX_FIELD) fail(`password hash for user '${username}' is too long`);
    if (value.includes(':')) fail(`more than one ':' on the line for user '${username}'`);
    if (value === '') fail(`user '${username}' has no password hash`);
    const hash = parseHash(value);
    if (typeof hash === 'string') fail(`user '${username}': ${hash}`);
    if (users.has(username))
      fail(`user '${username}' appears twice (first on line ${users.get(username)!.line})`);
    users.set(username, { line: lineNo, username, hash: hash as PasswordHash });
  }
  return users;
}

export {
  HashQueueFullError,
  hashLoad,
  MAX_CONCURRENT_HASHES,
  MAX_QUEUED_HASHES,
  MAX_QUEUED_PER_SOURCE,
} from './login-queue.ts';

/** One PBKDF2 on the thread pool, admitted by the login queue under `source` (see login-queue.ts). */
function pbkdf2Async(
  password: Uint8Array,
  salt: Uint8Array,
  iterations: number,
  source: string,
  signal?: AbortSignal,
): Promise<Buffer> {
  return withHashSlot(
    source,
    () =>
      new Promise<Buffer>((resolve, reject) => {
        pbkdf2(password, salt, iterations, HASH_BYTES, 'sha512', (err, key) =>
          err ? reject(err) : resolve(key),
        );
      }),
    signal,
  );
}

function sha512(password: Uint8Array, salt: Uint8Array): Buffer {
  return createHash('sha512').update(password).update(salt).digest();
}

/**
 * Checks `password` against a stored hash without blocking the event loop, in constant time.
 * `source` (the client's address) is the queue a PBKDF2 waits in; rejects with
 * HashQueueFullError when that queue is full, with `signal`'s reason once it is aborted.
 */
export async function verifyHash(
  hash: PasswordHash,
  password: Uint8Array,
  source?: string,
  signal?: AbortSignal,
): Promise<boolean> {
  const computed =
    hash.kind === 'pbkdf2-sha512'
      ? await pbkdf2Async(password, hash.salt, hash.iterations, sourceKey(source), signal)
      : hash.kind === 'argon2id'
        ? Buffer.from(
            await withHashSlot(
              sourceKey(source),
              () => argon2idRaw(password, hash.salt, hash, hash.hash.length),
              signal,
            ),
          )
        : sha512(password, hash.salt);
  return computed.length === hash.hash.length && timingSafeEqual(computed, hash.hash);
}

export interface HashOptions {
  /**
   * `sha512-pbkdf2` ($7$, default: Debian's Mosquitto 2.0 reads it), `argon2id` (Mosquitto
   * 2.1's default, with its parameters) or `sha512` ($6$, legacy, for old Mosquitto only).
   */
  algorithm?: 'sha512-pbkdf2' | 'sha512' | 'argon2id';
  iterations?: number;
  saltBytes?: number;
}

/** The hash string `broker-lite passwd` writes after `user:`. */
export async function hashPassword(
  password: string | Uint8Array,
  options: HashOptions = {},
): Promise<string> {
  const bytes = typeof password === 'string' ? Buffer.from(password, 'utf8') : password;
  if (options.algorithm === 'argon2id') {
    const a = ARGON2_DEFAULTS;
    const salt = randomBytes(options.saltBytes ?? a.saltBytes);
    const tag = await withHashSlot('', () => argon2idRaw(bytes, salt, a, a.hashBytes));
    return formatArgon2({ kind: 'argon2id', m: a.m, t: a.t, p: a.p, salt, hash: Buffer.from(tag) });
  }
  const salt = randomBytes(options.saltBytes ?? DEFAULT_SALT_BYTES);
  if (options.algorithm === 'sha512') {
    return `$6$${salt.toString('base64')}$${sha512(bytes, salt).toString('base64')}`;
  }
  const iterations = options.iterations ?? DEFAULT_ITERATIONS;
  if (!Number.isInteger(iterations) || iterations < 1 || iterations > MAX_ITERATIONS)
    throw new RangeError(`iterations must be 1..${MAX_ITERATIONS}`);
  const key = await pbkdf2Async(bytes, salt, iterations, '');
  return `$7$${iterations}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/**
 * What an unknown user is checked against: a random hash of the cost most of the file's entries
 * have (kind, iterations, salt length; the costlier on a tie), so that the answer takes as long
 * as a real user's and its timing does not tell who exists. An empty file: the default cost.
 */
export function decoyHash(users: ReadonlyMap<string, PasswordLine>): PasswordHash {
  const costs = new Map<string, { count: number; hash: PasswordHash }>();
  for (const { hash } of users.values()) {
    const key =
      hash.kind === 'sha512'
        ? `6$${hash.salt.length}`
        : hash.kind === 'argon2id'
          ? `a$${hash.m}$${hash.t}$${hash.p}$${hash.salt.length}$${hash.hash.length}`
          : `7$${hash.iterations}$${hash.salt.length}`;
    const c = costs.get(key);
    if (c === undefined) costs.set(key, { count: 1, hash });
    else c.count++;
  }
  // PBKDF2 iterations, argon2's KiB x passes: either way the costlier wins a tie.
  const cost = (h: PasswordHash): number =>
    h.kind === 'sha512' ? 0 : h.kind === 'argon2id' ? h.m * h.t : h.iterations;
  let typical: PasswordHash | undefined;
  let most = 0;
  for (const { count, hash } of costs.values()) {
    if (count > most || (count === most && typical !== undefined && cost(hash) > cost(typical))) {
      typical = hash;
      most = count;
    }
  }
  const salt = randomBytes(typical?.salt.length ?? DEFAULT_SALT_BYTES);
  const hash = randomBytes(HASH_BYTES);
  if (typical?.kind === 'sha512') return { kind: 'sha512', salt, hash };
  if (typical?.kind === 'argon2id') return { ...typical, salt, hash: randomBytes(typical.hash.length) };
  return { kind: 'pbkdf2-sha512', iterations: typical?.iterations ?? DEFAULT_ITERATIONS, salt, hash };
}

/** The users of a password file, able to check a login. */
export class PasswordFile {
  readonly users: ReadonlyMap<string, PasswordLine>;
  /** Unknown users still pay for one hash of the file's usual cost (see decoyHash). */
  readonly decoy: PasswordHash;

  constructor(users: Map<string, PasswordLine>) {
    this.users = users;
    this.decoy = decoyHash(users);
  }

  static parse(text: string, file: string): PasswordFile {
    return new PasswordFile(parsePasswordFile(text, file));
  }

  static async load(path: string): Promise<PasswordFile> {
    return PasswordFile.parse(await readBounded(path, 'password_file', MAX_PASSWORD_FILE_BYTES), path);
  }

  /**
   * A CONNECT without a password, or with an empty one, fails even for a user whose password is
   * empty: Mosquitto 2.0 takes a zero-length password for none (the differential suite showed
   * it, issue 15), and an empty password is no secret anyway.
   * `source`: the client's address, for fair queueing; rejects with HashQueueFullError when
   * that address (or everyone) has too many logins waiting: the caller answers "busy", not
   * "bad password", so that a real user's client retries instead of giving up. `signal`: the
   * client went away (a login still waiting leaves the queue).
   */
  async verify(
    username: string,
    password: Uint8Array | undefined,
    source?: string,
    signal?: AbortSignal,
  ): Promise<boolean> {
    const entry = this.users.get(username);
    const ok = await verifyHash(entry?.hash ?? this.decoy, password ?? new Uint8Array(0), source, signal);
    return ok && entry !== undefined && password !== undefined && password.length > 0;
  }
}

/** Reads a text file whole, refusing one larger than `max` bytes with a ConfigError. */
export async function readBounded(path: string, key: string, max: number): Promise<string> {
  let data: Buffer;
  try {
    // O_NONBLOCK: a FIFO in place of the file must not hang the reload (fstat refuses it next).
    const fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new ConfigError(path, 0, key, 'not a regular file');
      if (st.size > max) throw new ConfigError(path, 0, key, `file is larger than ${max} bytes`);
      data = await readFile(fh);
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError(path, 0, key, `cannot read the file (${code})`);
  }
  if (data.length > max) throw new ConfigError(path, 0, key, `file is larger than ${max} bytes`);
  return data.toString('utf8');
}

export interface PasswordAuthenticatorOptions {
  /** Mosquitto `allow_anonymous`: clients without a user name. */
  allowAnonymous: boolean;
  /** Undefined when no `password_file` is configured. */
  passwords?: PasswordFile;
}

/**
 * Mosquitto's login rules for a user name and password. Without a password file, a user name
 * gets in exactly where an anonymous client would (Mosquitto 2.0 does the same). A client
 * certificate never stands in for a password here: it names the user only on a listener with
 * use_identity_as_username or use_subject_as_username, and then the broker does not ask the
 * authenticator at all (as Mosquitto).
 */
export function createAuthenticator(options: PasswordAuthenticatorOptions): Authenticator {
  const { allowAnonymous, passwords } = options;
  return {
    authenticate(req) {
      if (req.username === undefined) return allowAnonymous;
      if (passwords === undefined) return allowAnonymous;
      return passwords.verify(req.username, req.password, req.remoteAddress, req.signal);
    },
  };
}
