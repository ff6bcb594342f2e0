/**
 * Issue 18.4: the version 2 record (record.ts): a 19-byte header, and records that share the
 * topic and non-user properties of a full record written shortly before in the same segment, so
 * the agent's readings take ~180 bytes on disk instead of ~230. A queue written in format 1 (by
 * the code before it: fixtures/queue-v1) still opens, reads, acknowledges and takes appends.
 */
import { cpSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { OutboxMessage } from '../src/core/outbox.ts';
import { crc32c } from '../src/node/durable-queue/crc32c.ts';
import { DurableQueue } from '../src/node/durable-queue/index.ts';
import { recordSeqAt, recordsIn, tmpDirs } from './helpers/dq-files.ts';
import { V1_FIXTURE, v1FixtureMessage } from './helpers/queue-v1-fixture.ts';

const tmp = tmpDirs('mqtt-edge-dq-format-');
const FIXTURE = join(import.meta.dirname, 'fixtures', 'queue-v1');

/** A reading as the agent maps it: ~122 bytes of JSON, its content type and its msg-id. */
function reading(i: number): OutboxMessage {
  const device = ['kitchen', 'greenhouse', 'boiler'][i % 3];
  const sensor = ['temperature', 'humidity', 'pressure', 'counter'][(i >> 2) % 4];
  const id = `${device}:3735928559:${i}:${i % 4}`;
  const text = `{"id":"${id}","device":"${device}","sensor":"${sensor}","value":${(20 + (i % 100) / 10).toFixed(1)},"at":${1765000000000 + i}}`;
  return {
    topic: `demo/${device}/${sensor}`,
    payload: new Uint8Array(Buffer.from(text.padEnd(122, ' '))),
    qos: 1,
    retain: false,
    properties: {
      contentType: 'application/json',
      payloadFormatIndicator: true,
      userProperties: [['msg-id', id]],
    },
  };
}

function segments(dir: string): string[] {
  return readdirSync(dir)
    .filter((n) => n.endsWith('.log'))
    .sort();
}

/** Each record of a segment file: offset, length, seq and whether it shares (flags bit 4). */
function records(dir: string, name: string) {
  const b = readFileSync(join(dir, name));
  const out: Array<{ at: number; len: number; seq: number; shared: boolean }> = [];
  for (let p = 8; p + 21 <= b.length; p += b.readUInt32LE(p)) {
    out.push({ at: p, len: b.readUInt32LE(p), seq: recordSeqAt(b, p, name), shared: (b[p + 18] & 16) !== 0 });
  }
  return out;
}

describe('issue 18.4: record format 2', () => {
  it('issue 18.4: a reading of the agent takes its payload plus under 65 bytes, and reads back whole', async () => {
    const dir = tmp();
    const q = await DurableQueue.open(dir, { fsync: 'never' });
    const n = 300; // ~54 KB: each topic's full record stays within reach of every later one
    for (let i = 0; i < n; i++) q.put(reading(i));
    await q.close();
    const [seg] = segments(dir);
    const recs = records(dir, seg);
    expect(recs.length).toBe(n);
    // one full record per topic (12 of them), the rest share
    expect(recs.filter((r) => !r.shared).length).toBe(12);
    const fileBytes = readFileSync(join(dir, seg)).length - 8;
    const perRecord = fileBytes / n;
    // format 1 took 232.5 bytes for these (measured with the code before); format 2 takes 185:
    // 26 of header and reference, the msg-id user property (~37), the payload
    expect(perRecord).toBeLessThan(122 + 65);
    const back = await DurableQueue.open(dir);
    const entries = back.read(0, n);
    expect(entries.map((e) => e.message)).toEqual(Array.from({ length: n }, (_, i) => reading(i)));
    await back.close();
  });

  it('issue 18.4: one topic with properties that change (or none, or user properties only) reads back exactly', async () => {
    const dir = tmp();
    const q = await DurableQueue.open(dir, { fsync: 'never' });
    const kinds: Array<OutboxMessage['properties']> = [
      undefined,
      { contentType: 'a' },
      { contentType: 'a', userProperties: [['k', 'v']] },
      {
        userProperties: [
          ['k', 'v1'],
          ['k', 'v2'],
        ],
      },
      { contentType: 'b', messageExpiryInterval: 5 },
      { contentType: 'a', correlationData: new Uint8Array([1, 2]), userProperties: [['x', '']] },
      {},
    ];
    const msgs: OutboxMessage[] = [];
    for (let i = 0; i < 140; i++) {
      const properties = kinds[(i * 3 + (i >> 3)) % kinds.length];
      const m: OutboxMessage = {
        topic: 't',
        payload: new Uint8Array([i]),
        qos: (i % 3) as 0 | 1 | 2,
        retain: i % 2 === 0,
      };
      if (properties !== undefined) m.properties = properties;
      msgs.push(m);
      q.put(m);
    }
    await q.close();
    const recs = records(dir, segments(dir)[0]);
    expect(recs.filter((r) => r.shared).length).toBeGreaterThan(20);
    const back = await DurableQueue.open(dir);
    // what a record of no properties or only dropped ones reads back as: none
    const want = msgs.map((m) => {
      if (m.properties === undefined || Object.keys(m.properties).length > 0) return m;
      const { properties: _none, ...rest } = m;
      return rest;
    });
    expect(back.read(0, 1000).map((e) => e.message)).toEqual(want);
    await back.close();
  });

  it('issue 18.4: a full record is written again past 64 KiB, and a rotten one loses only the records that share it', async () => {
    const dir = tmp();
    const q = await DurableQueue.open(dir, { fsync: 'never' });
    const n = 3000; // ~540 KB: about eight stretches of 64 KiB in one segment
    for (let i = 0; i < n; i++) q.put(reading(i));
    await q.close();
    const [seg] = segments(dir);
    const recs = records(dir, seg);
    const full = recs.filter((r) => !r.shared);
    expect(full.length).toBeGreaterThan(12 * 6);
    // rot in the second full record of topic 0's key: it is written again within 64 KiB
    const b = readFileSync(join(dir, seg));
    const victim = full.filter((r) => r.seq % 12 === full[0].seq % 12)[1];
    b[victim.at + 25] ^= 0xff;
    writeFileSync(join(dir, seg), b);
    const back = await DurableQueue.open(dir);
    const entries = back.read(0, n);
    const lost = n - entries.length;
    expect(back.stats().recovery.corruptRegions).toBe(1);
    expect(lost).toBeGreaterThan(1); // the full record and records pointing at it
    // what points at it lies within 64 KiB after it: about 360 readings, a twelfth of them its key's
    expect(lost).toBeLessThan(80);
    const want = new Map(Array.from({ length: n }, (_, i) => [i + 1, reading(i)]));
    for (const e of entries) expect(e.message).toEqual(want.get(e.seq));
    expect(back.stats().corruptOnRead).toBe(lost - 1);
    await back.close();
  });

  it('issue 18.4: a shared record torn at any point is cut, and appends follow it', async () => {
    const dir = tmp();
    const q = await DurableQueue.open(dir, { fsync: 'never' });
    for (let i = 0; i < 40; i++) q.put(reading(i));
    await q.close();
    const [seg] = segments(dir);
    const whole = readFileSync(join(dir, seg));
    const last = records(dir, seg).at(-1)!;
    expect(last.shared).toBe(true);
    for (const cut of [last.at + 3, last.at + 19, last.at + 24, last.at + last.len - 1]) {
      writeFileSync(join(dir, seg), whole.subarray(0, cut));
      const back = await DurableQueue.open(dir);
      expect(back.stats().recovery.truncatedTails).toBe(1);
      expect(back.read(0, 100).length).toBe(39);
      // the writer's table starts empty at an open: the first of a topic is full again, then shared
      expect(await back.put(reading(39))).toBe(40);
      expect(await back.put(reading(39))).toBe(41);
      expect(back.read(0, 100).map((e) => e.message)).toEqual([
        ...Array.from({ length: 40 }, (_, i) => reading(i)),
        reading(39),
      ]);
      await back.close();
      expect(recordsIn(join(dir, seg)).count).toBe(41);
      expect(
        records(dir, seg)
          .map((r) => r.shared)
          .slice(-2),
      ).toEqual([false, true]);
    }
  });
});

describe('issue 18.4: hostile format 2 records (a valid CRC, a lying body)', () => {
  /** Re-seals the record at `at` of `b` with a format 2 CRC after its bytes were changed. */
  const reseal = (b: Buffer, at: number) => {
    const len = b.readUInt32LE(at);
    b.writeUInt32LE((crc32c(b, at + 8, at + len, crc32c(b, at, at + 4)) ^ 0x3252454d) >>> 0, at + 4);
  };
  const cases: Array<
    [string, (b: Buffer, r: { at: number; len: number }, first: number, second: number) => void]
  > = [
    ['points at itself', (b, r) => b.writeUInt32LE(r.at, r.at + 19)],
    ['points past itself', (b, r) => b.writeUInt32LE(r.at + 4, r.at + 19)],
    ['points past the end of the file', (b, r) => b.writeUInt32LE(0xffffffff, r.at + 19)],
    ['points into the segment header', (b, r) => b.writeUInt32LE(0, r.at + 19)],
    ['points into the middle of a record', (b, r, first) => b.writeUInt32LE(first + 5, r.at + 19)],
    ['points at a shared record', (b, r, _first, second) => b.writeUInt32LE(second, r.at + 19)],
    ['claims another topic length', (b, r) => b.writeUInt16LE(b.readUInt16LE(r.at + 23) + 1, r.at + 23)],
    ['claims an unknown flag', (b, r) => (b[r.at + 18] |= 0x20)],
    [
      'claims a 5-byte properties length',
      (b, r) => {
        b[r.at + 18] |= 8;
        b.fill(0xff, r.at + 25, r.at + 30);
      },
    ],
  ];
  for (const [what, spoil] of cases) {
    it(`issue 18.4: a shared record that ${what} is lost alone; the records before it read back, nothing throws`, async () => {
      const dir = tmp();
      const q = await DurableQueue.open(dir, { fsync: 'never' });
      // the same reading thrice: one full record, then two that share it
      for (let i = 0; i < 3; i++) q.put(reading(0));
      await q.close();
      const [seg] = segments(dir);
      const recs = records(dir, seg);
      expect(recs.map((r) => r.shared)).toEqual([false, true, true]);
      const b = readFileSync(join(dir, seg));
      spoil(b, recs[2], recs[0].at, recs[1].at);
      reseal(b, recs[2].at);
      writeFileSync(join(dir, seg), b);
      const back = await DurableQueue.open(dir);
      const entries = back.read(0, 10);
      expect(entries.map((e) => e.seq)).toEqual([1, 2]);
      for (const e of entries) expect(e.message).toEqual(reading(0));
      const st = back.stats();
      // refused at the scan (a torn tail, cut) or when read (counted)
      expect(st.recovery.truncatedTails + st.corruptOnRead).toBe(1);
      await back.close();
    });
  }
});

describe('issue 18.4: a queue written in format 1 (fixtures/queue-v1, by the code before)', () => {
  const expected = (seq: number) => v1FixtureMessage(seq);

  it('issue 18.4: opens, reads every record with its time, acknowledges, appends in a new segment of format 2, and reopens', async () => {
    const dir = tmp();
    cpSync(FIXTURE, dir, { recursive: true });
    const before = segments(dir);
    expect(before.length).toBe(2);
    for (const s of before) expect(readFileSync(join(dir, s))[4]).toBe(1);
    const q = await DurableQueue.open(dir);
    const st = q.stats();
    expect(st.recovery).toMatchObject({ truncatedTails: 0, corruptRegions: 0, badHeaders: 0, cursor: 'ok' });
    expect(st.cursor).toBe(V1_FIXTURE.acked);
    expect(st.count).toBe(V1_FIXTURE.messages - V1_FIXTURE.acked);
    const entries = q.read(0, 10_000);
    expect(entries.map((e) => e.seq)).toEqual(
      Array.from({ length: V1_FIXTURE.messages - V1_FIXTURE.acked }, (_, i) => V1_FIXTURE.acked + 1 + i),
    );
    for (const e of entries) {
      expect(e.message).toEqual(expected(e.seq));
      expect(e.storedAt).toBe(V1_FIXTURE.clock0 + e.seq);
    }
    // older code must refuse the queue from now on rather than misread format 2 segments
    expect(JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'))).toEqual({
      format: 'mqtt-edge-durable-queue',
      version: 2,
    });
    for (let seq = V1_FIXTURE.acked + 1; seq <= 400; seq++) q.ack(seq);
    const next = V1_FIXTURE.messages + 1;
    expect(await q.put(reading(1))).toBe(next);
    expect(await q.put(reading(2))).toBe(next + 1);
    await q.close();
    const after = segments(dir);
    // the first segment was acknowledged through and removed; the second kept in format 1
    expect(after.length).toBe(2);
    expect(readFileSync(join(dir, after[0]))[4]).toBe(1);
    expect(readFileSync(join(dir, after[1]))[4]).toBe(2);
    expect(Number(after[1].slice(0, 20))).toBe(next);
    const again = await DurableQueue.open(dir);
    const all = again.read(0, 10_000);
    expect(all.map((e) => e.seq)).toEqual([
      ...Array.from({ length: V1_FIXTURE.messages - 400 }, (_, i) => 401 + i),
      next,
      next + 1,
    ]);
    for (const e of all.slice(0, -2)) expect(e.message).toEqual(expected(e.seq));
    expect(all.at(-2)!.message).toEqual(reading(1));
    expect(all.at(-1)!.message).toEqual(reading(2));
    await again.close();
  });

  it('issue 18.4: a format 1 segment whose header is damaged is still read as format 1', async () => {
    const dir = tmp();
    cpSync(FIXTURE, dir, { recursive: true });
    const last = segments(dir).at(-1)!;
    const b = readFileSync(join(dir, last));
    b.fill(0xee, 0, 8);
    writeFileSync(join(dir, last), b);
    const q = await DurableQueue.open(dir);
    expect(q.stats().recovery.badHeaders).toBe(1);
    const entries = q.read(0, 10_000);
    expect(entries.length).toBe(V1_FIXTURE.messages - V1_FIXTURE.acked);
    for (const e of entries) expect(e.message).toEqual(expected(e.seq));
    await q.close();
    expect(readFileSync(join(dir, last))[4]).toBe(1);
  });

  it('issue 18.4: a format 2 segment whose header is damaged is read as format 2', async () => {
    const dir = tmp();
    const q = await DurableQueue.open(dir, { fsync: 'never' });
    for (let i = 0; i < 50; i++) q.put(reading(i));
    await q.close();
    const [seg] = segments(dir);
    const b = readFileSync(join(dir, seg));
    b.fill(0, 0, 8);
    writeFileSync(join(dir, seg), b);
    const back = await DurableQueue.open(dir);
    expect(back.stats().recovery.badHeaders).toBe(1);
    expect(back.read(0, 100).map((e) => e.message)).toEqual(Array.from({ length: 50 }, (_, i) => reading(i)));
    await back.close();
    expect(readFileSync(join(dir, seg))[4]).toBe(2);
  });

  it('issue 18.4: a queue marked with a format newer than 2 is refused', async () => {
    const dir = tmp();
    cpSync(FIXTURE, dir, { recursive: true });
    writeFileSync(join(dir, 'meta.json'), JSON.stringify({ format: 'mqtt-edge-durable-queue', version: 3 }));
    await expect(DurableQueue.open(dir)).rejects.toMatchObject({ code: 'FORMAT' });
  });
});
