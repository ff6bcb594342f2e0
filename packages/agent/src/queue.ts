/**
 * The agent's durable queue: opened with the configured bounds, its events turned into log lines
 * (one when a failure or a spell of drops starts, summaries while it lasts, one when it ends,
 * never one per reading), and an open that waits for room on a full disk instead of exiting.
 */
import { statfsSync } from 'node:fs';
import path from 'node:path';
import {
  DurableQueue,
  DurableQueueError,
  type DurableQueueEvent,
  type DurableQueueOptions,
} from '@mqtt-edge/client';
import type { QueueConfig } from './config.ts';
import { heldHoldMs } from './config-queue.ts';
import type { Logger } from './log.ts';

/**
 * With a HELD window (issue 18.4) the acknowledge cursor is persisted every this many windows. Each
 * cursor write after the kernel wrote the file back dirties a 4 KiB page of its own, and with
 * windows past ~30 s that is every write: once per commit, as much as the commit's own page. At
 * four windows it costs a quarter of that; what it risks is duplicates, never a loss (after a
 * crash the queue sends again what the broker acknowledged since the cursor last reached the disk).
 */
const CURSOR_WINDOWS = 4;
const MAX_CURSOR_INTERVAL_MS = 3_600_000;

/** How often an open refused for lack of space is tried again, and how often that is logged. */
const OPEN_RETRY_MS = 2000;
const OPEN_LOG_EVERY_MS = 60_000;

export function queueOptions(c: QueueConfig, log: Logger): DurableQueueOptions {
  const o: DurableQueueOptions = {
    fsync: c.fsync,
    commitWindowMs: c.commitWindowMs,
    // Issue 18.5: readings are published as soon as they are appended, not after the commit that
    // ACKs the device (44 s late at p50 with a 90 s HELD window). The ACK still waits for the
    // fsync; a commit that fails after the publish is a duplicate at worst (the device resends).
    readBeforeCommit: true,
    dropPolicy: c.dropPolicy,
    maxBytes: c.maxBytes,
    onEvent: (e) => logQueueEvent(log, c, e),
  };
  if (c.maxCount !== undefined) o.maxCount = c.maxCount;
  if (c.maxAgeMs !== undefined) o.maxAgeMs = c.maxAgeMs;
  if (c.segmentBytes !== undefined) o.segmentBytes = c.segmentBytes;
  if (heldHoldMs(c) > 0)
    o.cursorIntervalMs = Math.min(MAX_CURSOR_INTERVAL_MS, Math.max(1000, CURSOR_WINDOWS * c.commitWindowMs));
  return o;
}

const NOT_ACKED =
  'readings are not acknowledged to devices until the queue can write again; devices keep them and send them again';

export function logQueueEvent(log: Logger, c: QueueConfig, e: DurableQueueEvent): void {
  switch (e.type) {
    case 'write-failed':
      log.log('error', 'queue-write-failed', {
        dir: c.dir,
        code: e.code,
        error: e.error,
        rejectedPuts: e.rejectedPuts,
        note: e.code === 'NO_SPACE' ? `the disk is full: ${NOT_ACKED}` : NOT_ACKED,
      });
      return;
    case 'write-failing':
      log.log('error', 'queue-write-failing', {
        dir: c.dir,
        code: e.code,
        error: e.error,
        forS: Math.round(e.forMs / 1000),
        rejectedPuts: e.rejectedPuts,
        failures: e.failures,
        note: NOT_ACKED,
      });
      return;
    case 'write-recovered':
      log.log('warn', 'queue-write-recovered', {
        dir: c.dir,
        forMs: e.forMs,
        rejectedPuts: e.rejectedPuts,
        failures: e.failures,
        note: 'readings are stored and acknowledged again',
      });
      return;
    case 'drop-start':
      log.log('warn', 'queue-dropping', {
        dir: c.dir,
        reason: e.reason,
        bound: boundOf(c, e.reason),
        fromSeq: e.seq,
        note: 'the queue is full: its oldest readings are dropped to make room (queue.dropPolicy drop-oldest); counted in droppedOldest',
      });
      return;
    case 'drop-summary':
      log.log('warn', e.ongoing ? 'queue-dropping' : 'queue-dropped', {
        dir: c.dir,
        reason: e.reason,
        dropped: e.dropped,
        firstSeq: e.firstSeq,
        lastSeq: e.lastSeq,
        forS: Math.round(e.forMs / 1000),
        ongoing: e.ongoing,
      });
  }
}

function boundOf(c: QueueConfig, reason: 'maxBytes' | 'maxCount' | 'maxAge'): number | undefined {
  return reason === 'maxBytes' ? c.maxBytes : reason === 'maxCount' ? c.maxCount : c.maxAgeMs;
}

/**
 * Opens the queue. A disk too full to open it on (a restart while the disk is full) is waited
 * for, logged once a minute: exiting would only have the supervisor restart the agent into the
 * same full disk, and the devices keep their readings meanwhile.
 */
export async function openQueue(c: QueueConfig, log: Logger): Promise<DurableQueue> {
  let loggedAt = Number.NEGATIVE_INFINITY;
  for (;;) {
    try {
      return await DurableQueue.open(c.dir, queueOptions(c, log));
    } catch (err) {
      if (!(err instanceof DurableQueueError) || err.code !== 'NO_SPACE') throw err;
      const now = Date.now();
      if (now - loggedAt >= OPEN_LOG_EVERY_MS) {
        loggedAt = now;
        log.log('error', 'queue-open-failed', {
          dir: c.dir,
          code: err.code,
          error: err.message,
          retryEveryMs: OPEN_RETRY_MS,
          note: 'the disk is full: the agent waits for room before it reads the ports',
        });
      }
      await new Promise((r) => setTimeout(r, OPEN_RETRY_MS));
    }
  }
}

/**
 * Warns at start when the queue's bound is more than its file system can hold now: the disk
 * would fill before the bound drops anything, and readings would be refused (not ACKed) rather
 * than the oldest dropped.
 */
export function checkQueueRoom(c: QueueConfig, log: Logger): void {
  let free: number;
  try {
    const s = statfsSync(c.dir);
    free = s.bavail * s.bsize;
  } catch {
    return;
  }
  // records carry 21-30 bytes of framing, and a segment (8 MiB) is freed only once wholly acknowledged
  const needs = c.maxBytes * 1.25 + (c.segmentBytes ?? 8 << 20);
  if (needs <= free) return;
  log.log('warn', 'queue-bound-exceeds-disk', {
    dir: path.resolve(c.dir),
    maxBytes: c.maxBytes,
    freeBytes: free,
    note: 'the disk can fill before queue.maxBytes is reached; set queue.maxBytes below the free space',
  });
}
