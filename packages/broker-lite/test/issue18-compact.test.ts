/**
 * Issue 18.4, broker side with the persistent subscriber offline: every reading is stored, so
 * the record bytes per stored message are what flash sees. Format 2 stores a message and its
 * queue entry in one record, with varint lengths and back-references (per file) to a client id,
 * topic + properties or user property key written before, and marks of a few bytes.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PacketWriter } from '@mqtt-edge/codec';
import { afterEach, describe, expect, it } from 'vitest';
import { crc32 } from '../src/crc32.ts';
import type { Delivery, Message } from '../src/message.ts';
import { renderMetrics } from '../src/metrics.ts';
import {
  FileRefs,
  MAX_NAME_BYTES,
  MAX_NAMES,
  ReadRefs,
  readMark,
  readQueued,
  writeMark,
  writeQueued,
} from '../src/persist-entry.ts';
import { CorruptRecordError, MAGIC, Rec, RecordReader, RecordWriter } from '../src/persist-format.ts';
import { recoverFile } from '../src/persist-read.ts';
import { readingPayload, readingPublish } from './helpers/pi-reading.ts';
import { RawClient, startBroker, type TestBroker } from './helpers/raw-client.ts';

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanup.splice(0)) await c();
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'issue18-compact-'));
  cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function broker(dir: string, windowMs = 0): Promise<TestBroker> {
  const tb = await startBroker({
    persistenceDir: dir,
    persistenceCommitWindowMs: windowMs,
    autosaveIntervalSeconds: 0,
  });
  cleanup.unshift(() => tb.close());
  return tb;
}

const v5 = { protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 3600 } };
const reading = readingPayload;

/** A persistent subscriber to `demo/#` that left, and the publisher of the readings. */
async function offlineSubscriber(tb: TestBroker): Promise<RawClient> {
  const sub = (await RawClient.connect(tb.port, { clientId: 'bench-subscriber', ...v5 })).client;
  await sub.subscribe('demo/#', 1);
  await sub.disconnect();
  return (await RawClient.connect(tb.port, { clientId: 'agent', ...v5 })).client;
}

async function publishReadings(pub: RawClient, n: number, from = 0): Promise<number> {
  let payloadBytes = 0;
  for (let i = from; i < from + n; i++) {
    const p = readingPublish(i, (i % 65535) + 1);
    payloadBytes += p.payload.length;
    pub.send(p);
    await pub.expect('puback');
  }
  return payloadBytes;
}

describe('issue 18.4: compact records for stored messages', () => {
  it('issue 18.4: a reading stored for an offline subscriber takes under 200 bytes of records (275 in format 1)', async () => {
    const dir = tempDir();
    const tb = await broker(dir);
    const p = tb.broker.persist;
    if (p === null) throw new Error('persistence off');
    const pub = await offlineSubscriber(tb);
    await publishReadings(pub, 8); // the first records of each name carry it inline
    const b0 = p.writtenBytes;
    const N = 200;
    const payloadBytes = await publishReadings(pub, N, 8);
    const perReading = (p.writtenBytes - b0) / N;
    expect(payloadBytes / N).toBeGreaterThan(120);
    expect(perReading).toBeLessThan(payloadBytes / N + 45);
    expect(perReading).toBeLessThan(170);
    pub.close();

    // The subscriber comes back and takes them: a Sent and a Del mark each (72 bytes in format 1).
    const m0 = p.writtenBytes;
    const back = (await RawClient.connect(tb.port, { clientId: 'bench-subscriber', ...v5 })).client;
    for (let i = 0; i < N + 8; i++) {
      const got = await back.expect('publish');
      back.send({ type: 'puback', packetId: got.packetId as number });
    }
    back.send({ type: 'pingreq' });
    await back.expect('pingresp');
    for (let i = 0; i < 200 && p.unsynced; i++) await new Promise((r) => setTimeout(r, 5));
    expect(tb.broker.sessions.get('bench-subscriber')?.inflightCount).toBe(0);
    const marks = (p.writtenBytes - m0) / (N + 8);
    expect(marks).toBeGreaterThan(0);
    expect(marks).toBeLessThan(30);
    back.close();
  });

  it('issue 18.4: a log cut anywhere inside its last stored message (a torn tail) recovers every message before it', async () => {
    const dir = tempDir();
    const tb = await broker(dir);
    const pub = await offlineSubscriber(tb);
    await publishReadings(pub, 5);
    const before = fs.statSync(path.join(dir, 'broker-lite.db')).size;
    await publishReadings(pub, 1, 5);
    pub.close();
    const log = fs.readFileSync(path.join(dir, 'broker-lite.db'));
    await tb.close();
    cleanup.shift();
    expect(log.length - before).toBeGreaterThan(130);
    for (let cut = before + 1; cut < log.length; cut += 7) {
      const d = tempDir();
      fs.writeFileSync(path.join(d, 'broker-lite.db'), log.subarray(0, cut));
      const r = await startBroker({ persistenceDir: d, autosaveIntervalSeconds: 0 });
      try {
        expect(r.logs.some((l) => l.message.includes('torn or corrupt tail'))).toBe(true);
        const q = r.broker.sessions.get('bench-subscriber');
        expect(q?.queue.slice(q.qHead).map((e) => e?.msg.topic)).toEqual([
          'demo/kitchen/temp',
          'demo/kitchen/hum',
          'demo/kitchen/press',
          'demo/kitchen/lux',
          'demo/kitchen/temp',
        ]);
        const last = q?.queue[q.qHead + 4]?.msg;
        expect(Buffer.from(last?.payload ?? []).equals(reading(4))).toBe(true);
        expect(last?.properties?.userProperties).toEqual([['msg-id', 'kitchen:1255712665:4:0']]);
        expect(last?.properties?.contentType).toBe('application/json');
      } finally {
        await r.close();
      }
    }
  });
});

// ---- hostile and corrupt records ------------------------------------------------------

function message(): Message {
  return {
    topic: 'demo/kitchen/temp',
    payload: reading(1),
    qos: 1,
    retain: false,
    properties: { contentType: 'application/json', userProperties: [['msg-id', 'x:1']] },
    expiresAt: 1_900_000_000_000,
    storeId: 0,
    storeRefs: 0,
    owned: true,
  };
}
const entry = (msg: Message): Delivery => ({
  msg,
  qos: 1,
  retain: false,
  subIds: [7, 300],
  pid: 12,
  state: 0,
});

/** One Stored record's body (after its type byte) as this code writes it. */
function storedBody(): Buffer {
  const w = new RecordWriter();
  writeQueued(w, new FileRefs(), new PacketWriter(), 'bench-subscriber', entry(message()), 1, 1, true);
  return Buffer.from(w.take().subarray(9));
}

/** Reads `body` as a record of `type` against a fresh file; the thrown error, if any. */
function readBody(type: Rec, body: Buffer): unknown {
  const r = new RecordReader(body, 0, body.length);
  try {
    if (type === Rec.Stored || type === Rec.Entry) readQueued(type, r, new ReadRefs(), 0, 0);
    else readMark(type as Rec.Del, r, new ReadRefs(), 5);
    return undefined;
  } catch (err) {
    return err;
  }
}

/** A varint as the format writes it. */
function varint(v: number): number[] {
  const out: number[] = [];
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}

describe('issue 18.4: hostile format 2 records', () => {
  it('issue 18.4: a stored message reads back as written (message, entry, ids, packet id)', () => {
    const body = storedBody();
    const r = new RecordReader(body, 0, body.length);
    const e = readQueued(Rec.Stored, r, new ReadRefs(), 0, 0);
    expect(e.clientId).toBe('bench-subscriber');
    expect([e.seq, e.storeId, e.qos, e.sentPid, e.relPid]).toEqual([1, 1, 1, 12, 0]);
    expect(e.subIds).toEqual([7, 300]);
    expect(e.msg?.topic).toBe('demo/kitchen/temp');
    expect(Buffer.from(e.msg?.payload ?? []).equals(reading(1))).toBe(true);
    expect(e.msg?.properties).toEqual({
      contentType: 'application/json',
      userProperties: [['msg-id', 'x:1']],
    });
    expect(e.msg?.expiresAt).toBe(1_900_000_000_000);
  });

  it('issue 18.4: every truncation of a stored message or a mark is a CorruptRecordError or a shorter payload, never another error', () => {
    const body = storedBody();
    for (let n = 0; n < body.length; n++) {
      const err = readBody(Rec.Stored, body.subarray(0, n));
      if (err !== undefined) expect(err, `cut at ${n}`).toBeInstanceOf(CorruptRecordError);
    }
    // before the payload every cut is caught
    expect(readBody(Rec.Stored, body.subarray(0, 20))).toBeInstanceOf(CorruptRecordError);
    const w = new RecordWriter();
    const refs = new FileRefs(0, 5, 0);
    writeMark(w, refs, Rec.Sent, 'c', 3, 9);
    const mark = Buffer.from(w.take().subarray(9));
    for (let n = 0; n < mark.length; n++)
      expect(readBody(Rec.Sent, mark.subarray(0, n)), `mark cut at ${n}`).toBeInstanceOf(CorruptRecordError);
    expect(readBody(Rec.Sent, mark)).toBeUndefined();
    expect(readBody(Rec.Sent, Buffer.concat([mark, Buffer.from([0])]))).toBeInstanceOf(CorruptRecordError);
  });

  it('issue 18.4: oversized lengths and counts, overlong varints, bad back-references and a bad head are CorruptRecordErrors', () => {
    // an inline head: a QoS 0 MQTT 5 PUBLISH to `t` with no properties (6 bytes)
    const HEAD = [12, 0x30, 4, 0, 1, 0x74, 0];
    // and it reads as one
    expect(readBody(Rec.Stored, Buffer.from([2, 0x41, 1, 1, 0x09, ...HEAD, 0, 1, 2]))).toBeUndefined();
    const cases: Array<[string, Rec, number[]]> = [
      ['client id longer than the record', Rec.Stored, [...varint(2 ** 40 * 2)]],
      ['client id length past the end', Rec.Del, [...varint(200 * 2), 1, 2, 3]],
      ['back-reference into an empty table', Rec.Stored, [...varint(5 * 2 + 1), 1, 1, 1]],
      ['back-reference far past the table', Rec.Del, [...varint(2 ** 52 + 1), 0]],
      ['varint of 9 bytes', Rec.Del, [2, 0x41, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]],
      ['varint past 2^53', Rec.Del, [2, 0x41, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]],
      ['QoS 3 delivery', Rec.Entry, [2, 0x41, 1, 0, 3]],
      ['a million subscription ids', Rec.Entry, [2, 0x41, 1, 0, 0x41, 2, ...varint(1_000_000), 1]],
      ['a billion user properties', Rec.Stored, [2, 0x41, 1, 1, 0x09, ...HEAD, ...varint(1e9), 1, 1]],
      ['a head that is not a PUBLISH', Rec.Stored, [2, 0x41, 1, 1, 0x09, ...varint(2 * 2), 0xc0, 0, 0]],
      ['a head that does not decode', Rec.Stored, [2, 0x41, 1, 1, 0x09, ...varint(4 * 2), 0x30, 9, 0, 0, 0]],
      [
        'a user property value past the end',
        Rec.Stored,
        [2, 0x41, 1, 1, 0x09, ...HEAD, 1, 2, 0x6b, ...varint(5000), 1],
      ],
      ['a user property key reference past the table', Rec.Stored, [2, 0x41, 1, 1, 0x09, ...HEAD, 1, 7, 0]],
      ['an entry id below 1', Rec.Entry, [2, 0x41, 1, 3, 1]],
      ['bytes after an entry', Rec.Entry, [2, 0x41, 1, 0, 1, 0]],
    ];
    for (const [what, type, bytes] of cases) {
      const lastStoreId = type === Rec.Entry ? 2 : 0;
      const body = Buffer.from(bytes);
      const r = new RecordReader(body, 0, body.length);
      const refs = new ReadRefs();
      const read = () =>
        type === Rec.Stored || type === Rec.Entry
          ? readQueued(type, r, refs, 0, lastStoreId)
          : readMark(type as Rec.Del, r, refs, 5);
      expect(read, what).toThrow(CorruptRecordError);
    }
  });

  it('issue 18.4: 5,000 random mutations of a stored message: a CorruptRecordError or a record, nothing else', () => {
    const body = storedBody();
    let seed = 18_4;
    const rand = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    let corrupt = 0;
    for (let i = 0; i < 5000; i++) {
      const b = Buffer.from(body);
      for (let k = 1 + Math.floor(rand() * 3); k > 0; k--)
        b[Math.floor(rand() * 40)] = Math.floor(rand() * 256);
      const err = readBody(Rec.Stored, b);
      if (err === undefined) continue;
      expect(err).toBeInstanceOf(CorruptRecordError);
      corrupt++;
    }
    expect(corrupt).toBeGreaterThan(100);
  });

  it('issue 18.4: the name table stops at MAX_NAMES on both sides: later names are inline, references stay right', () => {
    const w = new RecordWriter();
    const refs = new FileRefs();
    const writer = new PacketWriter();
    const msg = message();
    const n = MAX_NAMES + 10;
    for (let i = 1; i <= n; i++) {
      msg.topic = `t/${i}`;
      writeQueued(w, refs, writer, `c${i % 3}`, entry(msg), i, i, true);
    }
    msg.topic = 't/1';
    writeQueued(w, refs, writer, `c${(n + 1) % 3}`, entry(msg), n + 1, n + 1, true);
    const buf = w.take();
    const read = new ReadRefs();
    const topics: string[] = [];
    let pos = 0;
    for (let i = 1; i <= n + 1; i++) {
      const len = buf.readUInt32LE(pos);
      expect(buf[pos + 8]).toBe(Rec.Stored);
      const r = new RecordReader(buf, pos + 9, pos + 8 + len);
      const e = readQueued(Rec.Stored, r, read, i - 1, i - 1);
      expect(e.clientId).toBe(`c${i % 3}`);
      topics.push(e.msg?.topic ?? '');
      pos += 8 + len;
    }
    expect(read.count).toBe(MAX_NAMES);
    expect(topics[n - 1]).toBe(`t/${n}`);
    expect(topics[n]).toBe('t/1');
  });

  it('issue 18.4: a log whose record passes its CRC but holds a bad back-reference: the broker starts, logs it and keeps what came before', async () => {
    const dir = tempDir();
    const tb = await broker(dir);
    const pub = await offlineSubscriber(tb);
    await publishReadings(pub, 3);
    pub.close();
    const file = path.join(dir, 'broker-lite.db');
    const log = fs.readFileSync(file);
    await tb.close();
    cleanup.shift();
    expect(log.subarray(0, 8).equals(MAGIC)).toBe(true);
    // a Del mark naming client 4000 of a table that holds a few
    const body = Buffer.from([Rec.Del, ...varint(4000 * 2 + 1), 0]);
    const head = Buffer.alloc(8);
    head.writeUInt32LE(body.length, 0);
    head.writeUInt32LE(crc32(body, 0, body.length), 4);
    fs.writeFileSync(file, Buffer.concat([log, head, body, head, body]));
    const r = await startBroker({ persistenceDir: dir, autosaveIntervalSeconds: 0 });
    try {
      const bad = r.logs.find((l) => l.message.includes('record unreadable'));
      expect(String(bad?.fields?.error)).toContain('CorruptRecordError');
      expect(r.broker.sessions.get('bench-subscriber')?.queue.filter((e) => e !== undefined)).toHaveLength(3);
    } finally {
      await r.close();
    }
  });

  it('issue 18.4: a record cut off by recovery defines no names: a log kept after it continues the table where the kept records left it', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'broker-lite.db');
    const w = new RecordWriter();
    const refs = new FileRefs();
    const msg = message();
    writeQueued(w, refs, new PacketWriter(), 'c1', entry(msg), 1, 1, true); // names: c1, head, msg-id
    // CRC-valid, defines client id `zz` inline, then refers to a head that does not exist
    const body = Buffer.from([Rec.Stored, 4, 0x7a, 0x7a, 1, 1, 0x09, ...varint(99 * 2 + 1)]);
    const head = Buffer.alloc(8);
    head.writeUInt32LE(body.length, 0);
    head.writeUInt32LE(crc32(body, 0, body.length), 4);
    fs.writeFileSync(file, Buffer.concat([MAGIC, w.take(), head, body]));
    const tb = await startBroker({});
    cleanup.unshift(() => tb.close());
    const counters = recoverFile(tb.broker, file);
    expect(counters.names).toBe(3);
    expect(counters.nextSeq).toBe(2);
    expect(tb.logs.some((l) => String(l.fields?.error).includes('CorruptRecordError'))).toBe(true);
  });

  it('issue 18.4: a name longer than MAX_NAME_BYTES (a 60 KiB topic) is written whole each time and never kept for a back-reference', () => {
    const w = new RecordWriter();
    const refs = new FileRefs();
    const msg = message();
    msg.topic = `long/${'x'.repeat(60_000)}`;
    msg.properties = undefined;
    const client = 'c'.repeat(MAX_NAME_BYTES + 1);
    writeQueued(w, refs, new PacketWriter(), client, entry(msg), 1, 1, true);
    writeQueued(w, refs, new PacketWriter(), client, entry(msg), 2, 2, true);
    const buf = w.take();
    const first = buf.readUInt32LE(0);
    expect(buf.readUInt32LE(8 + first)).toBe(first); // the second record is as long: nothing referred back
    const read = new ReadRefs();
    let pos = 0;
    for (let i = 1; i <= 2; i++) {
      const len = buf.readUInt32LE(pos);
      const e = readQueued(Rec.Stored, new RecordReader(buf, pos + 9, pos + 8 + len), read, i - 1, i - 1);
      expect(e.clientId).toBe(client);
      expect(e.msg?.topic).toBe(msg.topic);
      pos += 8 + len;
    }
    expect(read.count).toBe(0);
  });

  it('issue 18.4: persistence_written_pages_total counts the 4 KiB pages each commit touches (what flash programs, whatever the record bytes)', async () => {
    const dir = tempDir();
    const tb = await broker(dir); // window 0: a commit per reading here
    const p = tb.broker.persist;
    if (p === null) throw new Error('persistence off');
    const pub = await offlineSubscriber(tb);
    await publishReadings(pub, 2);
    const pages0 = p.writtenPages;
    const syncs0 = p.syncs;
    const size0 = fs.statSync(path.join(dir, 'broker-lite.db')).size;
    await publishReadings(pub, 40, 2);
    const size = fs.statSync(path.join(dir, 'broker-lite.db')).size;
    const syncs = p.syncs - syncs0;
    const pages = p.writtenPages - pages0;
    // each commit rewrites the page it starts in, a page boundary crossed adds one
    expect(pages).toBeGreaterThanOrEqual(syncs);
    expect(pages).toBeLessThanOrEqual(syncs + Math.ceil((size - size0) / 4096));
    expect(pages).toBeGreaterThan(Math.ceil((size - size0) / 4096));
    const line = /^mqtt_edge_broker_persistence_written_pages_total (\d+)$/m.exec(
      renderMetrics(tb.broker, 0),
    );
    expect(Number(line?.[1])).toBe(p.writtenPages);
    pub.close();
  });
});
