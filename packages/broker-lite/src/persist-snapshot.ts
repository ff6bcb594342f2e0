/**
 * Snapshot writing (cf. Mosquitto's persist_write.c): the live state encoded as one run of
 * records, and written to a temporary file that is synced and renamed over the log.
 */
import fs from 'node:fs';
import type { Broker } from './broker.ts';
import type { Delivery, Message } from './message.ts';
import { FileRefs, writeQueued } from './persist-entry.ts';
import {
  FILE_MODE,
  MAGIC,
  Rec,
  RecordWriter,
  writeAll,
  writeClientPid,
  writeRetain,
  writeSession,
  writeSub,
  writeWill,
} from './persist-format.ts';

/** The live state as records, with the numbering it takes once it is the log. */
export interface EncodedSnapshot {
  body: Buffer;
  /** The store id of each message in the new file. */
  ids: Map<Message, number>;
  /** Every queue entry written, in order: their sequence numbers start at the old nextSeq. */
  entries: Delivery[];
  nextStoreId: number;
  nextSeq: number;
  /** The new file's back-references and numbering, for the records appended to it. */
  refs: FileRefs;
}

/**
 * Encodes the live state: retained messages (not $SYS), persistent sessions with their
 * subscriptions, queued and in-flight messages and received QoS 2 ids, then the wills waiting
 * out a delay. New store ids and sequence numbers count on from `nextStoreId` / `nextSeq`.
 * Undefined, with a log line, when something could not be encoded.
 */
export function encodeSnapshot(b: Broker, nextStoreId: number, nextSeq: number): EncodedSnapshot | undefined {
  const w = new RecordWriter();
  const writer = b.writer;
  const ids = new Map<Message, number>();
  const entries: Delivery[] = [];
  const refs = new FileRefs();
  let nextId = nextStoreId;
  try {
    b.retain.forEach((msg) => {
      if (!msg.topic.startsWith('$SYS/')) writeRetain(w, writer, msg);
    });
    for (const s of b.sessions.values()) {
      if (!s.persistent) continue;
      writeSession(w, s);
      if (s.hasSubscriptions) for (const sub of s.subs.values()) writeSub(w, s.clientId, sub);
      const live: Delivery[] = s.inflightCount > 0 ? [...s.inflight.values()] : [];
      for (let i = s.qHead; i < s.queue.length; i++) {
        const d = s.queue[i];
        if (d !== undefined) live.push(d);
      }
      for (const d of live) {
        let id = ids.get(d.msg);
        const stored = id === undefined;
        if (id === undefined) {
          id = nextId++;
          ids.set(d.msg, id);
        }
        const seq = nextSeq++;
        entries.push(d);
        writeQueued(w, refs, writer, s.clientId, d, seq, id, stored);
      }
      if (s.incomingQos2 !== null)
        for (const pid of s.incomingQos2) writeClientPid(w, Rec.InAdd, s.clientId, pid);
    }
    b.wills.forEach((clientId, username, will, dueAt) => {
      writeWill(w, writer, clientId, username, will, dueAt);
    });
  } catch (err) {
    b.log('error', 'persistence snapshot could not be encoded; the log is kept', { error: String(err) });
    return undefined;
  }
  return { body: w.take(), ids, entries, nextStoreId: nextId, nextSeq, refs };
}

/**
 * Writes MAGIC + `body` to `file`.tmp (0600) completely, syncs it and renames it over `file`,
 * then syncs `dir`. Throws, with the temporary file removed and `file` untouched, when any step
 * before the rename fails (ENOSPC included).
 */
export function writeSnapshotFile(file: string, dir: string, body: Buffer): void {
  const tmp = `${file}.tmp`;
  let fd = -1;
  try {
    fd = fs.openSync(tmp, 'w', FILE_MODE);
    // A temporary file left by a killed process keeps its old mode through open(): set it.
    fs.fchmodSync(fd, FILE_MODE);
    writeAll(fd, MAGIC);
    writeAll(fd, body);
    fs.fdatasyncSync(fd);
    fs.closeSync(fd);
    fd = -1;
    fs.renameSync(tmp, file);
  } catch (err) {
    if (fd >= 0) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  try {
    const dfd = fs.openSync(dir, 'r');
    fs.fsyncSync(dfd);
    fs.closeSync(dfd);
  } catch {
    // some filesystems cannot sync a directory; the rename is still atomic
  }
}
