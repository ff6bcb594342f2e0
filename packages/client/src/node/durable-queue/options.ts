import type { OutboxDropPolicy } from '../../core/outbox.ts';
import type { DurableQueueEvent } from './events.ts';

/**
 * When a put() resolves, and so what a crash can take:
 * - `'batch'`: after an fdatasync that covers the record. Puts that arrive while one fsync runs
 *   share the next one (group commit); `commitWindowMs` gathers them longer. Survives process
 *   crash and power loss.
 * - `{ intervalMs }`: after the write() into the page cache; a timer fsyncs every intervalMs.
 *   Survives a process crash; a power cut loses at most the last intervalMs of resolved puts.
 * - `'never'`: after the write(); fsync only on close(). Survives a process crash, not power loss.
 */
export type FsyncPolicy = 'batch' | 'never' | { intervalMs: number };

export interface DurableQueueOptions {
  /** Default 'batch'. */
  fsync?: FsyncPolicy;
  /**
   * Group-commit window under 'batch', ms (0 .. 300,000; default 0). 0: an fsync starts as soon as
   * a write is in the page cache and no round runs. N: the first write after a round waits up
   * to N ms for others before its fsync, so rounds start at most once every N ms and each put
   * resolves (still only after the fsync that covers it) up to N ms later. Fewer fsyncs, fewer
   * rewritten flash pages per record.
   */
  commitWindowMs?: number;
  /**
   * Default false: read() returns only entries whose put() resolved (after the fsync under
   * 'batch'). True (issue 18.5): read() also returns entries appended and not yet committed, so
   * a sender publishes them without waiting out the commit window; put() still resolves only
   * after the fsync. The reader must then accept an ack, or a publish outcome, for a seq before
   * its put() resolved (the Node client does: put()'s promise carries its seq), and a failed
   * commit after the entry was read leaves it sent once (a duplicate at worst when the producer
   * resends): it is cut from the queue and its seq is never taken again.
   */
  readBeforeCommit?: boolean;
  /** A new segment file starts when the current one would pass this. Default 8 MiB (64 KiB .. 1 GiB). */
  segmentBytes?: number;
  /** Bound on unacknowledged topic + payload bytes (stats.bytes). Default unbounded. */
  maxBytes?: number;
  /** Bound on the age of the oldest unacknowledged message. Default unbounded. */
  maxAgeMs?: number;
  /** Bound on the number of unacknowledged messages. Default unbounded. */
  maxCount?: number;
  /**
   * What a full queue does. Default 'reject-new': nothing put() resolved is ever dropped, the
   * caller (the agent) does not acknowledge the reading, and the device keeps it.
   */
  dropPolicy?: OutboxDropPolicy;
  /** Largest record (message plus 21 to ~30 bytes of framing, its properties as a full record). Default 256 MiB + 64 KiB. */
  maxRecordBytes?: number;
  /** Persist the acknowledge cursor after this many acks... Default 4096. */
  cursorEveryAcks?: number;
  /** ...or this long after the first ack not yet persisted. Default 1000 ms. */
  cursorIntervalMs?: number;
  /**
   * fsync rounds in flight at once under 'batch' (1..8). Default 1: puts that arrive during an
   * fsync all join the next one, the fewest and largest fsyncs (flash wear). More rounds cut put
   * latency at low concurrency on disks that complete parallel flushes faster, for more fsyncs.
   */
  parallelFsyncs?: number;
  /**
   * After a failed write or fsync (a full disk, an I/O error) put() is refused, typed, and the
   * queue tries to write again on a put at most this often, without being reopened. Default
   * 1000 ms (1 .. 3,600,000): a full disk costs one truncate and one write attempt a second.
   */
  retryIntervalMs?: number;
  /** How often a standing failure or a spell of drops is summarised to onEvent. Default 60,000 ms. */
  reportIntervalMs?: number;
  /** Told when writes fail and recover and when a bound drops messages; see events.ts. */
  onEvent?: (event: DurableQueueEvent) => void;
  /** Clock for record timestamps, the age bound and retries; tests inject one. Default Date.now. */
  now?: () => number;
}

export interface ResolvedOptions {
  fsync: 'batch' | 'never' | 'interval';
  intervalMs: number;
  commitWindowMs: number;
  readBeforeCommit: boolean;
  segmentBytes: number;
  maxBytes: number;
  maxAgeMs: number;
  maxCount: number;
  dropPolicy: OutboxDropPolicy;
  maxRecordBytes: number;
  cursorEveryAcks: number;
  cursorIntervalMs: number;
  parallelFsyncs: number;
  retryIntervalMs: number;
  reportIntervalMs: number;
  onEvent: ((event: DurableQueueEvent) => void) | null;
  now: () => number;
}

function positive(name: string, v: number | undefined, dflt: number, min = 1, max = Number.MAX_SAFE_INTEGER) {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || Number.isNaN(v) || v < min || v > max) {
    throw new RangeError(`durable queue option ${name} must be a number in ${min}..${max}, got ${String(v)}`);
  }
  return v;
}

export function resolveOptions(o: DurableQueueOptions = {}): ResolvedOptions {
  let fsync: ResolvedOptions['fsync'];
  let intervalMs = 0;
  const f = o.fsync ?? 'batch';
  if (f === 'batch' || f === 'never') fsync = f;
  else if (typeof f === 'object' && f !== null) {
    fsync = 'interval';
    intervalMs = positive('fsync.intervalMs', f.intervalMs, 1000, 1, 3_600_000);
  } else throw new RangeError(`durable queue option fsync must be 'batch', 'never' or { intervalMs }`);
  const commitWindowMs = positive('commitWindowMs', o.commitWindowMs, 0, 0, 300_000);
  if (commitWindowMs > 0 && fsync !== 'batch') {
    throw new RangeError(`durable queue option commitWindowMs applies to fsync 'batch' only`);
  }
  const dropPolicy = o.dropPolicy ?? 'reject-new';
  if (dropPolicy !== 'reject-new' && dropPolicy !== 'drop-oldest') {
    throw new RangeError(`durable queue option dropPolicy must be 'reject-new' or 'drop-oldest'`);
  }
  if (o.onEvent !== undefined && typeof o.onEvent !== 'function') {
    throw new TypeError('durable queue option onEvent must be a function');
  }
  if (o.readBeforeCommit !== undefined && typeof o.readBeforeCommit !== 'boolean') {
    throw new TypeError('durable queue option readBeforeCommit must be a boolean');
  }
  return {
    fsync,
    intervalMs,
    commitWindowMs,
    readBeforeCommit: o.readBeforeCommit ?? false,
    segmentBytes: Math.floor(positive('segmentBytes', o.segmentBytes, 8 << 20, 64 << 10, 1 << 30)),
    maxBytes: positive('maxBytes', o.maxBytes, Number.POSITIVE_INFINITY, 1, Number.POSITIVE_INFINITY),
    maxAgeMs: positive('maxAgeMs', o.maxAgeMs, Number.POSITIVE_INFINITY, 1, Number.POSITIVE_INFINITY),
    maxCount: positive('maxCount', o.maxCount, Number.POSITIVE_INFINITY, 1, Number.POSITIVE_INFINITY),
    dropPolicy,
    maxRecordBytes: Math.floor(
      positive('maxRecordBytes', o.maxRecordBytes, (256 << 20) + (64 << 10), 64, 2 ** 31),
    ),
    cursorEveryAcks: Math.floor(positive('cursorEveryAcks', o.cursorEveryAcks, 4096, 1, 2 ** 31)),
    cursorIntervalMs: positive('cursorIntervalMs', o.cursorIntervalMs, 1000, 1, 3_600_000),
    parallelFsyncs: Math.floor(positive('parallelFsyncs', o.parallelFsyncs, 1, 1, 8)),
    retryIntervalMs: positive('retryIntervalMs', o.retryIntervalMs, 1000, 1, 3_600_000),
    reportIntervalMs: positive('reportIntervalMs', o.reportIntervalMs, 60_000, 1, 86_400_000),
    onEvent: o.onEvent ?? null,
    now: o.now ?? Date.now,
  };
}
