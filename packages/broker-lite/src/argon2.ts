/**
 * `$argon2id$` password hashes, the default of mosquitto_passwd from Mosquitto 2.1 on:
 *   $argon2id$v=19$m=MEMORY_KIB,t=PASSES,p=LANES$SALT$HASH   (PHC string, base64 without padding)
 * Mosquitto 2.1 writes m=47104 (46 MiB), t=1, p=1 with 64-byte salts and 64-byte hashes.
 *
 * Argon2id is @noble/hashes' (audited, pure JavaScript, RFC 9106's vectors in its tests and
 * ours). A hash takes hundreds of milliseconds of CPU and tens of MiB, so it never runs on the
 * event loop: each runs in a worker thread (at most MAX_CONCURRENT_HASHES at once, admitted by
 * login-queue.ts like PBKDF2), started when first needed and ended after ARGON2_IDLE_MS unused,
 * which gives its memory back. Where the package cannot be loaded in a worker (the single-file
 * bundle copied alone onto a gateway), the hash runs on the main thread in slices of about
 * 10 ms (noble's argon2idAsync), so the broker still answers between slices.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

export interface Argon2Params {
  /** Memory, KiB. */
  m: number;
  /** Passes. */
  t: number;
  /** Lanes. */
  p: number;
}

export interface Argon2Hash extends Argon2Params {
  kind: 'argon2id';
  salt: Buffer;
  hash: Buffer;
}

/** What `broker-lite passwd -H argon2id` writes: Mosquitto 2.1's parameters. */
export const ARGON2_DEFAULTS: Argon2Params & { saltBytes: number; hashBytes: number } = {
  m: 47_104,
  t: 1,
  p: 1,
  saltBytes: 64,
  hashBytes: 64,
};
/**
 * Bounds on what a password file may ask of every login: 128 MiB and 10 passes (two logins at
 * once hold twice that). A hash beyond them is a config error, not a slow or killed broker.
 */
export const ARGON2_MAX_MEMORY_KIB = 131_072;
export const ARGON2_MAX_PASSES = 10;
export const ARGON2_MAX_LANES = 16;
/** A worker unused this long ends (its memory goes with it). */
export const ARGON2_IDLE_MS = 10_000;

const B64 = /^[A-Za-z0-9+/]+$/;

function unpadded(s: string, min: number, max: number): Buffer | null {
  if (!B64.test(s) || s.length % 4 === 1) return null;
  const b = Buffer.from(s, 'base64');
  return b.length >= min && b.length <= max ? b : null;
}

/** Why `value` is not a usable `$argon2id$` hash, or the hash. */
export function parseArgon2(value: string): Argon2Hash | string {
  const parts = value.split('$');
  if (parts.length !== 6 || parts[1] !== 'argon2id')
    return 'an argon2id hash has the form $argon2id$v=19$m=MEMORY,t=PASSES,p=LANES$SALT$HASH';
  if (parts[2] !== 'v=19') return `argon2 version '${parts[2].slice(0, 10)}' is not supported (v=19 only)`;
  const m = /^m=([0-9]{1,10}),t=([0-9]{1,10}),p=([0-9]{1,10})$/.exec(parts[3]);
  if (m === null) return `argon2 parameters '${parts[3].slice(0, 40)}' are not m=N,t=N,p=N`;
  const params = { m: Number(m[1]), t: Number(m[2]), p: Number(m[3]) };
  if (params.p < 1 || params.p > ARGON2_MAX_LANES)
    return `argon2 lanes p=${params.p} outside 1..${ARGON2_MAX_LANES}`;
  if (params.t < 1 || params.t > ARGON2_MAX_PASSES)
    return `argon2 passes t=${params.t} outside 1..${ARGON2_MAX_PASSES}`;
  if (params.m < 8 * params.p || params.m > ARGON2_MAX_MEMORY_KIB)
    return `argon2 memory m=${params.m} KiB outside ${8 * params.p}..${ARGON2_MAX_MEMORY_KIB}`;
  const salt = unpadded(parts[4], 8, 1024);
  if (salt === null) return 'the argon2 salt is not 8 to 1024 bytes of unpadded base64';
  const hash = unpadded(parts[5], 4, 1024);
  if (hash === null) return 'the argon2 hash is not 4 to 1024 bytes of unpadded base64';
  return { kind: 'argon2id', ...params, salt, hash };
}

export function formatArgon2(h: Argon2Hash): string {
  const b64 = (b: Buffer): string => b.toString('base64').replace(/=+$/, '');
  return `$argon2id$v=19$m=${h.m},t=${h.t},p=${h.p}$${b64(h.salt)}$${b64(h.hash)}`;
}

// ---- the workers -------------------------------------------------------------------------

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const lib = import(workerData.lib);
parentPort.on('message', async (j) => {
  try {
    const { argon2id } = await lib;
    const out = argon2id(j.password, j.salt, { t: j.t, m: j.m, p: j.p, dkLen: j.dkLen });
    parentPort.postMessage({ out }, [out.buffer]);
  } catch (err) {
    parentPort.postMessage({ error: String((err && err.message) || err) });
  }
});
`;

interface Job {
  password: Uint8Array;
  salt: Uint8Array;
  m: number;
  t: number;
  p: number;
  dkLen: number;
}

class HashWorker {
  readonly worker: Worker;
  private idle: NodeJS.Timeout | null = null;
  private pending: { resolve(out: Uint8Array): void; reject(err: Error): void } | null = null;

  constructor(
    lib: string,
    private readonly pool: HashWorker[],
  ) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { lib } });
    this.worker.on('message', (r: { out?: Uint8Array; error?: string }) => {
      const p = this.pending;
      this.pending = null;
      this.worker.unref();
      this.rest();
      if (r.out !== undefined) p?.resolve(r.out);
      else p?.reject(new Error(r.error ?? 'argon2 failed'));
    });
    const fail = (err: Error): void => {
      this.leave();
      this.pending?.reject(err);
      this.pending = null;
    };
    this.worker.on('error', fail);
    this.worker.on('exit', () => fail(new Error('argon2 worker exited')));
  }

  run(job: Job): Promise<Uint8Array> {
    if (this.idle !== null) clearTimeout(this.idle);
    this.idle = null;
    this.worker.ref();
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.worker.postMessage(job);
    });
  }

  /** Back in the pool; ended after ARGON2_IDLE_MS unless used again. */
  private rest(): void {
    this.pool.push(this);
    this.idle = setTimeout(() => {
      this.leave();
      void this.worker.terminate();
    }, ARGON2_IDLE_MS);
    this.idle.unref();
  }

  private leave(): void {
    if (this.idle !== null) clearTimeout(this.idle);
    this.idle = null;
    const at = this.pool.indexOf(this);
    if (at >= 0) this.pool.splice(at, 1);
  }
}

const idleWorkers: HashWorker[] = [];
let workersRunning = 0;
let libPath: string | null | undefined;

/** The package's module for a worker to import, or null when it is not on disk (a bundle). */
function workerLib(): string | null {
  if (libPath === undefined) {
    try {
      libPath = createRequire(import.meta.url).resolve('@noble/hashes/argon2.js');
    } catch {
      libPath = null;
    }
  }
  return libPath;
}

/** Argon2id workers alive now (tests, diagnostics). */
export function argon2Workers(): number {
  return workersRunning;
}

/**
 * The raw argon2id tag of `password` under `params` and `salt`, computed off the event loop.
 * Callers admit it through the login queue (withHashSlot) first.
 */
export async function argon2idRaw(
  password: Uint8Array,
  salt: Uint8Array,
  params: Argon2Params,
  dkLen: number,
): Promise<Uint8Array> {
  const job: Job = { password, salt, m: params.m, t: params.t, p: params.p, dkLen };
  const lib = workerLib();
  if (lib !== null) {
    let w = idleWorkers.pop();
    if (w === undefined) {
      w = new HashWorker(lib, idleWorkers);
      workersRunning++;
      w.worker.once('exit', () => workersRunning--);
    }
    return w.run(job);
  }
  const { argon2idAsync } = await import('@noble/hashes/argon2.js');
  return argon2idAsync(password, salt, { t: params.t, m: params.m, p: params.p, dkLen, asyncTick: 10 });
}
