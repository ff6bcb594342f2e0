/** The `queue:` section: where readings wait for the broker, how they reach the disk, and its bounds. */
import path from 'node:path';
import { fmtMs, fmtSize, parseDuration, type Reader, show } from './config-reader.ts';

export type FsyncSetting = 'batch' | 'never' | { intervalMs: number };

export interface QueueConfig {
  dir: string;
  fsync: FsyncSetting;
  /** Group-commit window under `fsync: batch`, ms (0 with the other policies). */
  commitWindowMs: number;
  /** Bound on queued topic + payload bytes; DEFAULT_QUEUE_MAX_BYTES unless configured. */
  maxBytes: number;
  maxCount?: number;
  maxAgeMs?: number;
  dropPolicy: 'reject-new' | 'drop-oldest';
  segmentBytes?: number;
}

/**
 * The queue's default bound (issue 12.12): an unbounded queue fills the gateway's disk during a
 * long broker outage, and the system (logs, other services) with it. 256 MiB of readings is
 * about 1.5 million JSON readings, days of a busy gateway, well inside any SD card. The default
 * drop policy stays `reject-new`: a full queue refuses new readings and does not ACK them, so the
 * devices keep them in their rings and the agent never breaks a promise it made (the product's
 * one guarantee). `drop-oldest` (keep the newest, count and log what goes) is the operator's
 * choice to make.
 */
export const DEFAULT_QUEUE_MAX_BYTES = 256 * 2 ** 20;

/**
 * `queue.commitWindow`'s default (issue 18.4), from bench/RESULTS.md "Flash wear": at 100
 * readings/s 50 ms cuts the queue's fsyncs from ~19-21 to ~8 a second and its bytes written per
 * reading by about half; it costs each reading up to 50 ms before the device's ACK and the
 * publish (the Pi chain's reading-to-subscriber p99 went from 43 to 83 ms, under issue 18.3's
 * 100 ms). Longer windows save more at high rates but near the devices' retransmission timeout
 * (1 s in firmware-sim; 1 s windows made devices resend) frames are sent twice.
 */
export const DEFAULT_COMMIT_WINDOW_MS = 50;

/**
 * The longest window: 5 minutes. Windows past the devices' retransmission timeout need devices
 * that understand HELD (issue 18.4; the agent sends it from HELD_MIN_WINDOW_MS on); at 1 reading/s
 * a 150 s window is what keeps a reading, its share of the pages a commit rewrites included,
 * under twice its payload (bench/RESULTS.md, "Flash wear").
 */
export const MAX_COMMIT_WINDOW_MS = 300_000;

/** From this window on the agent sends HELD to devices that understand it (their ACK may come late). */
export const HELD_MIN_WINDOW_MS = 250;
/** HELD's `t`: the window plus this, for the fsync (seconds on a worn SD card). */
export const HELD_MARGIN_MS = 1000;

/** HELD's `t` for this queue (issue 18.4), ms; 0: no HELD (ACKs come within the window, under 250 ms). */
export function heldHoldMs(q: QueueConfig): number {
  return q.fsync === 'batch' && q.commitWindowMs >= HELD_MIN_WINDOW_MS
    ? q.commitWindowMs + HELD_MARGIN_MS
    : 0;
}

const QUEUE_KEYS = [
  'dir',
  'fsync',
  'commitWindow',
  'maxBytes',
  'maxCount',
  'maxAge',
  'dropPolicy',
  'segmentBytes',
] as const;

/** `stateDir` holds the queue unless `queue.dir` says otherwise. */
export function readQueueSection(r: Reader, v: unknown, stateDir: string): QueueConfig {
  const q = r.object('queue', v, QUEUE_KEYS) ?? {};
  const fsync = readFsync(r, q.fsync);
  const queue: QueueConfig = {
    dir: r.filePath('queue.dir', q.dir) ?? path.join(stateDir, 'queue'),
    fsync,
    commitWindowMs: readCommitWindow(r, q.commitWindow, fsync),
    maxBytes: r.size('queue.maxBytes', q.maxBytes, 1024, Number.MAX_SAFE_INTEGER) ?? DEFAULT_QUEUE_MAX_BYTES,
    dropPolicy: r.oneOf(
      'queue.dropPolicy',
      q.dropPolicy,
      ['reject-new', 'drop-oldest'] as const,
      'reject-new',
    ),
  };
  const maxCount = r.int('queue.maxCount', q.maxCount, 1, Number.MAX_SAFE_INTEGER);
  if (maxCount !== undefined) queue.maxCount = maxCount;
  const maxAgeMs = r.duration('queue.maxAge', q.maxAge, 1000, 10 * 365 * 86_400_000);
  if (maxAgeMs !== undefined) queue.maxAgeMs = maxAgeMs;
  const segmentBytes = r.size('queue.segmentBytes', q.segmentBytes, 64 << 10, 1 << 30);
  if (segmentBytes !== undefined) queue.segmentBytes = segmentBytes;
  return queue;
}

function readFsync(r: Reader, v: unknown): FsyncSetting {
  if (v === undefined || v === null) return 'batch';
  if (v === 'batch' || v === 'never') return v;
  const ms = parseDuration(v);
  if (typeof v !== 'string' || ms === undefined || ms < 1 || ms > 3_600_000) {
    r.problem('queue.fsync', `must be batch, never, or an interval such as 100ms; got ${show(v)}`);
    return 'batch';
  }
  return { intervalMs: ms };
}

function readCommitWindow(r: Reader, v: unknown, fsync: FsyncSetting): number {
  if (fsync !== 'batch') {
    if (v !== undefined && v !== null && parseDuration(v) !== 0) {
      r.problem(
        'queue.commitWindow',
        `applies to fsync: batch only (with ${show(typeof fsync === 'string' ? fsync : fmtMs(fsync.intervalMs))} readings are acknowledged before their fsync); got ${show(v)}`,
      );
    }
    return 0;
  }
  return r.duration('queue.commitWindow', v, 0, MAX_COMMIT_WINDOW_MS, DEFAULT_COMMIT_WINDOW_MS);
}

/** The section in the file's own keys and units. */
export function queueDocument(q: QueueConfig): Record<string, unknown> {
  const queue: Record<string, unknown> = {
    dir: q.dir,
    fsync: typeof q.fsync === 'string' ? q.fsync : fmtMs(q.fsync.intervalMs),
  };
  if (q.fsync === 'batch') queue.commitWindow = fmtMs(q.commitWindowMs);
  queue.maxBytes = fmtSize(q.maxBytes);
  if (q.maxCount !== undefined) queue.maxCount = q.maxCount;
  if (q.maxAgeMs !== undefined) queue.maxAge = fmtMs(q.maxAgeMs);
  queue.dropPolicy = q.dropPolicy;
  if (q.segmentBytes !== undefined) queue.segmentBytes = fmtSize(q.segmentBytes);
  return queue;
}
