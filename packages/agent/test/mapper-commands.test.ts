import type { PublishPacket } from '@mqtt-edge/codec';
import { Decoder } from 'cbor-x';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CommandRouter, type Reply } from '../src/commands.ts';
import { silentLogger } from '../src/log.ts';
import { Mapper, messageId, parseMessageId } from '../src/mapper.ts';

const ctx = { device: 'dev-1', bootId: 4294967295, seq: 65535, index: 3, receivedAt: 1700000000000 };

describe('Mapper', () => {
  it('JSON: id, device, sensor, value, unit, ts, at; msg-id user property with MQTT 5', () => {
    const m = new Mapper({
      prefix: 'a/b',
      template: '{prefix}/{device}/{sensor}',
      payload: 'json',
      qos: 1,
      protocolVersion: 5,
    });
    const msg = m.map({ ...ctx, reading: { sensor: 'temp', value: -0.5, unit: 'Cel', ts: 12 } });
    expect(msg.topic).toBe('a/b/dev-1/temp');
    expect(msg.qos).toBe(1);
    expect(JSON.parse(Buffer.from(msg.payload).toString())).toEqual({
      id: 'dev-1:4294967295:65535:3',
      device: 'dev-1',
      sensor: 'temp',
      value: -0.5,
      unit: 'Cel',
      ts: 12,
      at: 1700000000000,
    });
    expect(msg.properties?.userProperties).toEqual([['msg-id', 'dev-1:4294967295:65535:3']]);
    expect(msg.properties?.contentType).toBe('application/json');
  });

  it('CBOR and raw payloads; no properties with MQTT 3.1.1', () => {
    const cbor = new Mapper({
      prefix: 'p',
      template: '{prefix}/{sensor}/of/{device}',
      payload: 'cbor',
      qos: 0,
      protocolVersion: 4,
    });
    const m1 = cbor.map({ ...ctx, reading: { sensor: 'hum', value: 40 } });
    expect(m1.topic).toBe('p/hum/of/dev-1');
    expect(m1.properties).toBeUndefined();
    expect(new Decoder({ mapsAsObjects: true, useRecords: false }).decode(m1.payload)).toMatchObject({
      id: 'dev-1:4294967295:65535:3',
      value: 40,
    });
    const raw = new Mapper({
      prefix: 'p',
      template: '{device}/{sensor}',
      payload: 'raw',
      qos: 2,
      protocolVersion: 5,
    });
    const m2 = raw.map({ ...ctx, reading: { sensor: 'x', value: 1e-7 } });
    expect(Buffer.from(m2.payload).toString()).toBe('1e-7');
    expect(m2.topic).toBe('dev-1/x');
  });

  it('message ids round-trip, names with colons included (property)', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[A-Za-z0-9_.:-]{1,64}$/),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 63 }),
        (d, b, s, i) => {
          expect(parseMessageId(messageId(d, b, s, i))).toEqual({ device: d, bootId: b, seq: s, index: i });
        },
      ),
    );
    expect(parseMessageId('garbage')).toBeUndefined();
    expect(parseMessageId('a:b:c:d')).toBeUndefined();
  });
});

function pub(topic: string, payload = '', extra: Partial<PublishPacket> = {}): PublishPacket {
  return {
    type: 'publish',
    topic,
    payload: Buffer.from(payload),
    qos: 1,
    retain: false,
    dup: false,
    packetId: 1,
    ...extra,
  };
}

function router(
  devices: Record<string, { sent: Array<[number, string, unknown]>; ok?: boolean }>,
  timeoutMs = 1000,
) {
  const replies: Reply[] = [];
  const r = new CommandRouter({
    prefix: 'site/a',
    timeoutMs,
    lookup: (d) => {
      const dev = devices[d];
      if (dev === undefined) return undefined;
      return {
        sendCommand: (id, name, args) => {
          dev.sent.push([id, name, args]);
          return dev.ok ?? true;
        },
      };
    },
    reply: (x) => replies.push(x),
    log: silentLogger,
  });
  const body = (i: number) => JSON.parse(Buffer.from(replies[i].payload).toString());
  return { r, replies, body };
}

describe('CommandRouter', () => {
  it('sends the command and publishes the RESULT to topic/result', () => {
    const dev = { sent: [] as Array<[number, string, unknown]> };
    const { r, replies, body } = router({ d1: dev });
    expect(r.filter).toBe('site/a/+/cmd/+');
    r.handle(pub('site/a/d1/cmd/set-led', '{"on":true}'));
    expect(dev.sent).toEqual([[expect.any(Number), 'set-led', { on: true }]]);
    r.result('d1', { type: 'result', seq: 0, id: dev.sent[0][0], ok: true, value: true });
    expect(replies[0].topic).toBe('site/a/d1/cmd/set-led/result');
    expect(body(0)).toEqual({ ok: true, value: true });
    r.close();
  });

  it('replies to the MQTT 5 response topic with the correlation data', () => {
    const dev = { sent: [] as Array<[number, string, unknown]> };
    const { r, replies } = router({ d1: dev });
    const corr = new Uint8Array([1, 2, 3]);
    r.handle(
      pub('site/a/d1/cmd/ping', '', { properties: { responseTopic: 'me/inbox', correlationData: corr } }),
    );
    r.result('d1', { type: 'result', seq: 0, id: dev.sent[0][0], ok: true, value: new Uint8Array([255]) });
    expect(replies[0].topic).toBe('me/inbox');
    expect(replies[0].properties?.correlationData).toEqual(corr);
    expect(JSON.parse(Buffer.from(replies[0].payload).toString())).toEqual({
      ok: true,
      value: { base64: '/w==' },
    });
    r.close();
  });

  it('answers every bad request with an error reply, never a throw', () => {
    const { r, replies, body } = router({ d1: { sent: [] }, gone: { sent: [], ok: false } });
    r.handle(pub('site/a/nobody/cmd/ping'));
    r.handle(pub('site/a/d1/cmd/ping', '{not json'));
    r.handle(pub('site/a/d1/cmd/ping', 'x'.repeat(5000)));
    r.handle(pub('site/a/gone/cmd/ping'));
    r.handle(pub('site/a/d1/cmd/__proto__'));
    expect(replies.map((_, i) => body(i).ok)).toEqual([false, false, false, false, false]);
    expect(body(0).error).toMatch(/unknown/);
    expect(body(1).error).toMatch(/JSON/);
    expect(body(2).error).toMatch(/larger/);
    expect(body(3).error).toMatch(/writable/);
    expect(body(4).error).toMatch(/name/);
    r.close();
  });

  it('ignores retained commands and topics that are not commands', () => {
    const dev = { sent: [] as Array<[number, string, unknown]> };
    const { r, replies } = router({ d1: dev });
    r.handle(pub('site/a/d1/cmd/ping', '', { retain: true }));
    r.handle(pub('site/a/d1/cmd/ping/result'));
    r.handle(pub('other/d1/cmd/ping'));
    expect(dev.sent).toEqual([]);
    expect(replies).toEqual([]);
    expect(r.counters.ignoredRetained).toBe(1);
  });

  it('times out a device that does not answer, and ignores its late RESULT', async () => {
    const dev = { sent: [] as Array<[number, string, unknown]> };
    const { r, replies, body } = router({ d1: dev }, 20);
    r.handle(pub('site/a/d1/cmd/ping'));
    await new Promise((res) => setTimeout(res, 60));
    expect(body(0)).toMatchObject({ ok: false });
    expect(body(0).error).toMatch(/no answer/);
    r.result('d1', { type: 'result', seq: 0, id: dev.sent[0][0], ok: true });
    expect(replies).toHaveLength(1);
  });

  it('hostile topics and payloads never throw (property)', () => {
    const { r } = router({ d1: { sent: [] } }, 5);
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), fc.uint8Array({ maxLength: 900 }), (t, p) => {
        r.handle({ type: 'publish', topic: `site/a/${t}`, payload: p, qos: 0, retain: false, dup: false });
      }),
      { numRuns: 300 },
    );
    r.close();
  });
});
