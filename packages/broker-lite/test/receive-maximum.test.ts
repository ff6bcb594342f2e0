import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encode, type Packet } from '@mqtt-edge/codec';
import { afterEach, describe, expect, it } from 'vitest';
import { RawClient, startBroker, type TestBroker } from './helpers/raw-client.ts';

const brokers: TestBroker[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const b of brokers.splice(0)) await b.close();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

async function broker(receiveMaximum?: number, persistenceDir?: string): Promise<TestBroker> {
  const b = await startBroker({ receiveMaximum, persistenceDir });
  brokers.push(b);
  return b;
}

const publish = (n: number, qos: 1 | 2, retain = false): Packet => ({
  type: 'publish',
  topic: `rm/${n}`,
  payload: Buffer.from(`m${n}`),
  qos,
  retain,
  dup: false,
  packetId: n,
});

/** Reads until the broker's DISCONNECT and the close; returns the DISCONNECT and the acks before it. */
async function untilDisconnect(c: RawClient): Promise<{ rc: number | undefined; acks: number }> {
  let acks = 0;
  for (;;) {
    const p = await c.next(3000);
    if (p === null) return { rc: undefined, acks };
    if (p.type === 'puback' || p.type === 'pubrec') acks++;
    else if (p.type === 'disconnect') {
      expect(await c.next(3000)).toBeNull(); // and the socket closes
      return { rc: p.reasonCode, acks };
    } else throw new Error(`unexpected ${p.type}`);
  }
}

describe('MQTT 5 Receive Maximum, broker side', () => {
  it('is advertised in CONNACK: the option, else max_inflight_messages (issue 15.3)', async () => {
    const a = await broker();
    const c1 = await RawClient.connect(a.port, { protocolVersion: 5, clientId: 'rm-a' });
    expect(c1.connack.properties?.receiveMaximum).toBe(100);
    c1.client.close();
    const b = await broker(7);
    const c2 = await RawClient.connect(b.port, { protocolVersion: 5, clientId: 'rm-b' });
    expect(c2.connack.properties?.receiveMaximum).toBe(7);
    c2.client.close();
  });

  it('QoS 2: one PUBLISH past the maximum unreleased gets DISCONNECT 0x93; releasing one makes room', async () => {
    const b = await broker(5);
    const { client: c } = await RawClient.connect(b.port, { protocolVersion: 5, clientId: 'rm-q2' });
    for (let i = 1; i <= 5; i++) {
      c.send(publish(i, 2));
      expect((await c.expect('pubrec')).packetId).toBe(i);
    }
    // a retransmission of an id already held is not a new message
    c.send({ ...publish(3, 2), dup: true } as Packet);
    expect((await c.expect('pubrec')).packetId).toBe(3);
    // PUBREL/PUBCOMP frees one slot
    c.send({ type: 'pubrel', packetId: 1 });
    expect((await c.expect('pubcomp')).packetId).toBe(1);
    c.send(publish(6, 2));
    expect((await c.expect('pubrec')).packetId).toBe(6);
    // flood: everything past the fifth unreleased one
    const flood = Buffer.concat([7, 8, 9, 10].map((n) => encode(publish(n, 2), 5)));
    c.sendBytes(flood);
    const r = await untilDisconnect(c);
    expect(r.rc).toBe(0x93);
    expect(r.acks).toBe(0);
  });

  it('QoS 1 under group commit: PUBACKs not yet sent count; a flood in one write is cut at the maximum', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'broker-lite-rm-'));
    dirs.push(dir);
    const b = await broker(4, dir);
    const { client: c } = await RawClient.connect(b.port, { protocolVersion: 5, clientId: 'rm-q1' });
    // one write: the broker parses them in one turn, before any commit could release a PUBACK
    // (retained, so each one writes to the log and its PUBACK waits for the fsync)
    c.sendBytes(Buffer.concat(Array.from({ length: 10 }, (_, i) => encode(publish(i + 1, 1, true), 5))));
    const r = await untilDisconnect(c);
    expect(r.rc).toBe(0x93);
    // the four within the maximum were accepted (acks released after the commit, before the close)
    expect(r.acks).toBeLessThanOrEqual(4);
    // the fifth was refused, not stored
    expect(b.broker.retain.get('rm/4')).toBeDefined();
    expect(b.broker.retain.get('rm/5')).toBeUndefined();
  });

  it('QoS 1 within the maximum, paced by the acks, is never cut', async () => {
    const b = await broker(2);
    const { client: c } = await RawClient.connect(b.port, { protocolVersion: 5, clientId: 'rm-ok' });
    for (let i = 1; i <= 50; i++) {
      c.send(publish(i, 1));
      expect((await c.expect('puback')).packetId).toBe(i);
    }
    expect(await c.silent(100)).toBe(true);
    c.close();
  });

  it('MQTT 3.1.1 has no Receive Maximum: the same flood is accepted', async () => {
    const b = await broker(5);
    const { client: c } = await RawClient.connect(b.port, { clientId: 'rm-311' });
    c.sendBytes(Buffer.concat([1, 2, 3, 4, 5, 6, 7, 8].map((n) => encode(publish(n, 2), 4))));
    for (let i = 1; i <= 8; i++) expect((await c.expect('pubrec')).packetId).toBe(i);
    c.close();
  });
});
