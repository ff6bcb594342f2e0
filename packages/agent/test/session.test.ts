import { OutboxFullError, type OutboxMessage } from '@mqtt-edge/client';
import {
  cobsEncode,
  crc32c,
  encodeFrame,
  type Frame,
  FrameDecoder,
  type HelloFrame,
  type ResultFrame,
  type SensorInfo,
} from '@mqtt-edge/serial-protocol';
import { Encoder } from 'cbor-x';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SeqWindow } from '../src/dedupe.ts';
import { type DeviceCounters, type DeviceEvent, PortSession } from '../src/device-session.ts';
import { Mapper } from '../src/mapper.ts';

/** A session with a scripted queue: `mode` decides what each put() does. */
function rig(
  options: {
    framing?: 'native' | 'json-lines' | 'key-value';
    device?: string;
    /** The port's configured interval (issue 19; 0: not watched). */
    expectedIntervalMs?: number;
    /** HELD's t (issue 18.4; 0/absent: no HELD). */
    holdMs?: number;
  } = {},
) {
  let commits = 0;
  const logs: Array<{ level: string; event: string; fields: Record<string, unknown> }> = [];
  let reopens = 0;
  let rearms = 0;
  const stored: OutboxMessage[] = [];
  const written: Frame[] = [];
  const events: DeviceEvent[] = [];
  const results: ResultFrame[] = [];
  const hellos: HelloFrame[] = [];
  const described: Array<[string, SensorInfo[]]> = [];
  const devices: Record<string, DeviceCounters> = {};
  const out = new FrameDecoder();
  const state = {
    mode: 'ok' as 'ok' | 'full' | 'fail' | 'hold',
    held: [] as Array<() => void>,
    writable: true,
    /** The session's clock (ms); undefined: Date.now(). */
    now: undefined as number | undefined,
  };
  let seq = 0;
  const session = new PortSession({
    port: 'p0',
    framing: options.framing ?? 'native',
    device: options.device,
    ...(options.expectedIntervalMs === undefined ? {} : { expectedIntervalMs: options.expectedIntervalMs }),
    ...(options.holdMs === undefined ? {} : { holdMs: options.holdMs }),
    textBootId: 77,
    mapper: new Mapper({
      prefix: 's',
      template: '{prefix}/{device}/{sensor}',
      payload: 'json',
      qos: 1,
      protocolVersion: 5,
    }),
    host: {
      store: (m) => {
        if (state.mode === 'full') return Promise.reject(new OutboxFullError('full'));
        if (state.mode === 'fail') return Promise.reject(new Error('EIO'));
        if (state.mode === 'hold')
          return new Promise((resolve) =>
            state.held.push(() => {
              stored.push(m);
              resolve(++seq);
            }),
          );
        stored.push(m);
        return Promise.resolve(++seq);
      },
      write: (b) => {
        if (!state.writable) return false;
        written.push(...out.push(b));
        return true;
      },
      onDevice: (e) => events.push(e),
      onResult: (_d, r) => results.push(r),
      onHello: (f) => hellos.push(f),
      onSensors: (d, list) => described.push([d, list]),
      deviceCounters: (id) => {
        devices[id] ??= { readings: 0, framingErrors: 0, lastReadingAt: 0 };
        return devices[id];
      },
      reopen: () => {
        reopens++;
      },
      rearmSilence: () => {
        rearms++;
      },
      commitNow: () => {
        commits++;
      },
      now: () => state.now ?? Date.now(),
      log: {
        log: (level, event, fields = {}) => {
          logs.push({ level, event, fields });
        },
        enabled: () => true,
      },
    },
  });
  const acks = () => written.filter((f) => f.type === 'ack').map((f) => f.seq);
  const settle = () => new Promise((r) => setTimeout(r, 0));
  return {
    session,
    stored,
    written,
    events,
    results,
    hellos,
    described,
    devices,
    state,
    acks,
    settle,
    logs,
    reopens: () => reopens,
    rearms: () => rearms,
    commits: () => commits,
  };
}

const hello = (bootId = 1, deviceId = 'dev1'): Frame => ({
  type: 'hello',
  seq: 0,
  deviceId,
  firmware: 'fw',
  bootId,
  sensors: [{ name: 't' }],
});
const data = (seq: number, bootId = 1, n = 2): Frame => ({
  type: 'data',
  seq,
  bootId,
  readings: Array.from({ length: n }, (_, i) => ({ sensor: `s${i}`, value: seq * 10 + i })),
});
/** A DATA frame with any body, CRC and COBS done by hand (the encoder validates bodies). */
function rawData(seq: number, body: unknown): Uint8Array {
  const cbor = new Encoder({
    useRecords: false,
    mapsAsObjects: true,
    variableMapSize: true,
    pack: false,
  }).encode(body);
  const raw = new Uint8Array(3 + cbor.length + 4);
  raw[0] = 0x02;
  raw[1] = seq >> 8;
  raw[2] = seq & 0xff;
  raw.set(cbor, 3);
  const crc = crc32c(raw, 0, 3 + cbor.length);
  new DataView(raw.buffer).setUint32(3 + cbor.length, crc, true);
  const enc = cobsEncode(raw);
  const out = new Uint8Array(enc.length + 1);
  out.set(enc);
  return out;
}

const ids = (ms: OutboxMessage[]) => ms.map((m) => m.properties?.userProperties?.[0]?.[1]);

describe('PortSession: store, then acknowledge', () => {
  it('acks a DATA frame only after every reading was stored, and stores each once', async () => {
    const r = rig();
    r.session.push(encodeFrame(hello()));
    expect(r.events).toEqual([
      { type: 'online', device: 'dev1', bootId: 1, firmware: 'fw', sensors: [{ name: 't' }] },
    ]);
    r.state.mode = 'hold';
    r.session.push(encodeFrame(data(5)));
    await r.settle();
    expect(r.acks()).toEqual([]);
    r.state.held.shift()!();
    await r.settle();
    expect(r.acks()).toEqual([]); // one of two readings stored: not yet
    r.state.held.shift()!();
    await r.settle();
    expect(r.acks()).toEqual([5]);
    expect(ids(r.stored)).toEqual(['dev1:1:5:0', 'dev1:1:5:1']);
    expect(r.stored[0].topic).toBe('s/dev1/s0');
  });

  it('acks a duplicate again without storing it; ignores one that arrives while storing', async () => {
    const r = rig();
    r.session.push(encodeFrame(hello()));
    r.state.mode = 'hold';
    r.session.push(encodeFrame(data(1)));
    r.session.push(encodeFrame(data(1))); // retransmitted before the first finished
    expect(r.session.counters.duplicatesInFlight).toBe(1);
    for (const f of r.state.held.splice(0)) f();
    await r.settle();
    r.state.mode = 'ok';
    r.session.push(encodeFrame(data(1))); // the ACK was lost; it comes again
    await r.settle();
    expect(r.stored).toHaveLength(2);
    expect(r.acks()).toEqual([1, 1]);
    expect(r.session.counters.duplicates).toBe(1);
  });

  it('does not ack when the queue is full, and stores only the rest on the retransmission', async () => {
    const r = rig();
    r.session.push(encodeFrame(hello()));
    let calls = 0;
    r.state.mode = 'ok';
    // First reading stored, second refused: a bytes bound can split a frame like this.
    const store = (r.session as unknown as { o: { host: { store: (m: OutboxMessage) => Promise<number> } } })
      .o.host;
    const orig = store.store;
    store.store = (m) => (++calls === 2 ? Promise.reject(new OutboxFullError('full')) : orig(m));
    r.session.push(encodeFrame(data(9)));
    await r.settle();
    expect(r.acks()).toEqual([]);
    expect(r.session.counters.rejected).toBe(1);
    r.session.push(encodeFrame(data(9)));
    await r.settle();
    expect(r.acks()).toEqual([9]);
    expect(ids(r.stored)).toEqual(['dev1:1:9:0', 'dev1:1:9:1']);
  });

  it('counts a store failure (disk) and does not ack', async () => {
    const r = rig();
    r.session.push(encodeFrame(hello()));
    r.state.mode = 'fail';
    r.session.push(encodeFrame(data(2)));
    await r.settle();
    expect(r.acks()).toEqual([]);
    expect(r.session.counters.storeErrors).toBe(2);
  });

  it('does not ack DATA from an unknown device and asks it for a HELLO', async () => {
    const r = rig();
    r.session.push(encodeFrame(data(3)));
    await r.settle();
    expect(r.acks()).toEqual([]);
    expect(r.stored).toHaveLength(0);
    expect(r.written.some((f) => f.type === 'cmd' && f.name === 'hello')).toBe(true);
    r.session.push(encodeFrame(hello()));
    r.session.push(encodeFrame(data(3)));
    await r.settle();
    expect(r.acks()).toEqual([3]);
  });

  it('uses the configured device id when DATA comes before any HELLO', async () => {
    const r = rig({ device: 'pinned' });
    r.session.push(encodeFrame(data(3, 42)));
    await r.settle();
    expect(ids(r.stored)).toEqual(['pinned:42:3:0', 'pinned:42:3:1']);
    expect(r.acks()).toEqual([3]);
  });

  it('starts a new dedupe window on a new boot (HELLO or DATA) and acks with the new boot id', async () => {
    const r = rig();
    r.session.push(encodeFrame(hello(1)));
    r.session.push(encodeFrame(data(0, 1)));
    await r.settle();
    r.session.push(encodeFrame(hello(2)));
    r.session.push(encodeFrame(data(0, 2)));
    await r.settle();
    r.session.push(encodeFrame(data(0, 3))); // HELLO of boot 3 lost
    await r.settle();
    expect(ids(r.stored)).toEqual([
      'dev1:1:0:0',
      'dev1:1:0:1',
      'dev1:2:0:0',
      'dev1:2:0:1',
      'dev1:3:0:0',
      'dev1:3:0:1',
    ]);
    const acks = r.written.filter((f) => f.type === 'ack');
    expect(acks.map((a) => (a.type === 'ack' ? a.bootId : -1))).toEqual([1, 2, 3]);
    expect(r.session.counters.boots).toBe(3);
  });

  it('a store of the old boot that finishes after a reboot does not ack into the new boot', async () => {
    const r = rig();
    r.session.push(encodeFrame(hello(1)));
    r.state.mode = 'hold';
    r.session.push(encodeFrame(data(4, 1)));
    r.session.push(encodeFrame(hello(2)));
    for (const f of r.state.held.splice(0)) f();
    await r.settle();
    expect(r.acks()).toEqual([]);
    // Not acknowledged, but in the queue and published all the same: counted as stored.
    expect(r.stored).toHaveLength(2);
    expect(r.session.counters.stored).toBe(2);
  });

  it('survives garbage, truncated frames and bit flips between good frames', async () => {
    const r = rig();
    const good = [encodeFrame(hello()), encodeFrame(data(1)), encodeFrame(data(2))];
    const flipped = encodeFrame(data(3)).slice();
    flipped[4] ^= 0x10;
    const stream = [
      new Uint8Array([1, 2, 3, 0xff, 0]),
      good[0],
      good[1].subarray(0, 5),
      new Uint8Array([0]),
      flipped,
      new Uint8Array(5000).fill(7), // oversize run
      new Uint8Array([0]),
      good[2],
    ];
    for (const s of stream) r.session.push(s);
    await r.settle();
    expect(r.acks()).toEqual([2]);
    expect(r.session.counters.framingErrors).toBeGreaterThanOrEqual(3);
  });

  it('never throws on random bytes and keeps working after them (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 }), async (chunks) => {
        const r = rig();
        for (const c of chunks) r.session.push(c);
        r.session.push(new Uint8Array([0]));
        r.session.push(encodeFrame(hello(9, 'after')));
        r.session.push(encodeFrame(data(1, 9)));
        await r.settle();
        expect(r.acks()).toContain(1);
      }),
      { numRuns: 100 },
    );
  });

  it('retires an intact DATA whose body can never be accepted: ACK, no store, counted', async () => {
    const r = rig();
    r.session.push(encodeFrame(hello()));
    // CRC-valid frames with a non-finite value, as a buggy firmware would send them.
    r.session.push(rawData(7, { b: 1, r: [{ s: 't', v: Number.NaN }] }));
    // Another boot's invalid frame is not ours to retire.
    r.session.push(rawData(8, { b: 99, r: [{ s: 't', v: Number.NaN }] }));
    await r.settle();
    expect(r.stored).toHaveLength(0);
    expect(r.acks()).toEqual([7]);
    expect(r.session.counters.invalidRetired).toBe(1);
  });

  it('counts ACKs it could not write (port gone); the retransmission gets one', async () => {
    const r = rig();
    r.session.push(encodeFrame(hello()));
    r.state.writable = false;
    r.session.push(encodeFrame(data(1)));
    await r.settle();
    expect(r.session.counters.acksDropped).toBe(1);
    r.state.writable = true;
    r.session.push(encodeFrame(data(1)));
    await r.settle();
    expect(r.acks()).toEqual([1]);
    expect(r.stored).toHaveLength(2);
  });

  it('reports offline when the port closes and online again when it reopens', () => {
    const r = rig();
    r.session.push(encodeFrame(hello()));
    r.session.closed();
    r.session.reset();
    r.session.push(encodeFrame(hello()));
    expect(r.events.map((e) => e.type)).toEqual(['online', 'offline', 'online']);
  });

  it('routes RESULT frames with the device id', () => {
    const r = rig();
    r.session.push(encodeFrame(hello()));
    r.session.push(encodeFrame({ type: 'result', seq: 3, id: 12, ok: true, value: 'pong' }));
    expect(r.results).toMatchObject([{ id: 12, ok: true, value: 'pong' }]);
  });

  it('text framings: readings stored under the configured device, no ACK', async () => {
    const r = rig({ framing: 'key-value', device: 'board' });
    r.session.opened();
    r.session.push(Buffer.from('# banner\ntemp=21.5 hum=40\nnot a line\ntemp=22\n'));
    await r.settle();
    expect(ids(r.stored)).toEqual(['board:77:0:0', 'board:77:0:1', 'board:77:1:0']);
    expect(r.written).toEqual([]);
    expect(r.session.counters.framingErrors).toBe(1);
    expect(r.events[0]).toMatchObject({ type: 'online', device: 'board' });
  });
});

describe('issue 14: what the session tells the agent about its device', () => {
  it('issue 14.1: every HELLO reaches the host, model and commands included, a repeat too', () => {
    const r = rig();
    const described: HelloFrame = {
      ...(hello() as HelloFrame),
      model: 'TH-1',
      commands: [{ name: 'reboot', kind: 'button' }],
    };
    r.session.push(encodeFrame(described));
    r.session.push(encodeFrame(described));
    expect(r.hellos).toEqual([described, described]);
    expect(r.events.map((e) => e.type)).toEqual(['online']);
  });

  it('issue 14.1: a HELLO after DATA under a pinned id (same boot) still describes the device', async () => {
    const r = rig({ device: 'dev1' });
    r.session.push(encodeFrame(data(1, 1)));
    await r.settle();
    expect(r.hellos).toEqual([]);
    r.session.push(encodeFrame(hello()));
    expect(r.hellos.map((h) => h.sensors)).toEqual([[{ name: 't' }]]);
  });

  it('issue 14.1: a text device is described by the sensors its lines carry, again only when a new one appears', () => {
    const r = rig({ framing: 'json-lines', device: 'board' });
    r.session.opened();
    r.session.push(
      Buffer.from('{"sensor":"temp","value":21.5,"unit":"Cel"}\n{"temp":22,"hum":40}\n{"hum":41}\n'),
    );
    expect(r.described).toEqual([
      ['board', [{ name: 'temp', unit: 'Cel' }]],
      ['board', [{ name: 'temp', unit: 'Cel' }, { name: 'hum' }]],
    ]);
  });

  it('issue 14.3: per device counters (readings, framing errors, last reading) and framing errors by kind', async () => {
    const r = rig();
    r.session.push(encodeFrame(hello()));
    const before = Date.now();
    r.session.push(encodeFrame(data(1, 1)));
    await r.settle();
    r.session.push(new Uint8Array([1, 2, 3, 0]));
    r.session.push(encodeFrame(data(1, 1))); // a duplicate: not counted again
    await r.settle();
    expect(r.devices.dev1).toMatchObject({ readings: 2, framingErrors: 1 });
    expect(r.devices.dev1.lastReadingAt).toBeGreaterThanOrEqual(before);
    expect(r.session.framingErrorsByKind).toEqual({ short: 1 });
  });
});

describe('issue 19.2: a port that goes quiet is woken', () => {
  const T = 1_000_000;
  const helloCmds = (written: Frame[]) =>
    written.filter((f) => f.type === 'cmd' && f.name === 'hello').length;
  /** What an operator sees at the default level (debug lines follow each further step). */
  const silenceLogs = (logs: Array<{ level: string; event: string }>) =>
    logs.filter(
      (l) => l.level !== 'debug' && (l.event.startsWith('port-silent') || l.event === 'port-alive'),
    );

  it('issue 19.2: silent past 1.5 intervals: a HELLO request; still silent an interval later (1..10 s): a reopen; one warning for the episode, one line when it ends; counted', () => {
    const r = rig();
    r.state.now = T;
    r.session.opened();
    r.session.push(encodeFrame({ ...(hello() as HelloFrame), intervalMs: 1000 }));
    expect(r.session.expectedIntervalMs).toBe(1000);
    const asked = helloCmds(r.written);
    // Silent from T: the first step is due at T + 1500.
    expect(r.session.silenceDeadline()).toBe(T + 1500);
    r.state.now = T + 1499;
    expect(r.session.checkSilence(T + 1499)).toBe(T + 1500);
    expect(helloCmds(r.written)).toBe(asked);
    r.state.now = T + 1500;
    expect(r.session.checkSilence(T + 1500)).toBe(T + 2500);
    expect(helloCmds(r.written)).toBe(asked + 1);
    expect(r.session.counters).toMatchObject({ silences: 1, silenceProbes: 1, silenceReopens: 0 });
    expect(r.session.silentSince).toBe(T);
    // No answer within one interval: reopen.
    r.state.now = T + 2500;
    r.session.checkSilence(T + 2500);
    expect(r.reopens()).toBe(1);
    expect(r.session.counters).toMatchObject({ silences: 1, silenceProbes: 1, silenceReopens: 1 });
    // The agent reopens the port: a full 1.5 intervals before the next request, same episode.
    r.session.closed();
    expect(r.session.silenceDeadline()).toBe(Number.POSITIVE_INFINITY);
    r.state.now = T + 2600;
    r.session.reset();
    r.session.opened();
    expect(r.session.silenceDeadline()).toBe(T + 4100);
    r.state.now = T + 4100;
    r.session.checkSilence(T + 4100);
    expect(r.session.counters).toMatchObject({ silences: 1, silenceProbes: 2, silenceReopens: 1 });
    // It speaks: the episode ends.
    r.state.now = T + 4200;
    r.session.push(encodeFrame(data(1)));
    expect(r.session.silentSince).toBeUndefined();
    expect(silenceLogs(r.logs).map((l) => [l.level, l.event])).toEqual([
      ['warn', 'port-silent'],
      ['info', 'port-alive'],
    ]);
    expect(r.logs.find((l) => l.event === 'port-silent')?.fields).toMatchObject({
      port: 'p0',
      device: 'dev1',
      silentMs: 1500,
      expectedIntervalMs: 1000,
    });
    expect(r.logs.find((l) => l.event === 'port-alive')?.fields).toMatchObject({
      silentMs: 4200,
      probes: 2,
      reopens: 1,
    });
    // Heard: the next deadline counts from the frame.
    expect(r.session.silenceDeadline()).toBe(T + 4200 + 1500);
  });

  it('issue 19.2: the interval comes from HELLO p, else the port setting; 0 turns the watch off; none at all: not watched', () => {
    const configured = rig({ expectedIntervalMs: 60_000 });
    configured.state.now = T;
    configured.session.opened();
    expect(configured.session.expectedIntervalMs).toBe(60_000);
    expect(configured.session.silenceDeadline()).toBe(T + 90_000);
    // A HELLO with p wins, and the agent is told to re-arm its timer.
    const before = configured.rearms();
    configured.session.push(encodeFrame({ ...(hello() as HelloFrame), intervalMs: 200 }));
    expect(configured.session.expectedIntervalMs).toBe(200);
    expect(configured.rearms()).toBeGreaterThan(before);
    // At least interval + 0.5 s: 700 ms for a 200 ms device.
    expect(configured.session.silenceDeadline()).toBe(T + 700);
    // A HELLO without p (a new boot of older firmware) falls back to the setting.
    configured.session.push(encodeFrame(hello(2)));
    expect(configured.session.expectedIntervalMs).toBe(60_000);

    const off = rig({ expectedIntervalMs: 0 });
    off.session.opened();
    off.session.push(encodeFrame({ ...(hello() as HelloFrame), intervalMs: 200 }));
    expect(off.session.expectedIntervalMs).toBe(0);
    expect(off.session.silenceDeadline()).toBe(Number.POSITIVE_INFINITY);

    const unset = rig();
    unset.session.opened();
    expect(unset.session.silenceDeadline()).toBe(Number.POSITIVE_INFINITY);
  });

  it('issue 19.2: bytes that decode to nothing are not hearing; any valid frame is (RESULT too)', () => {
    const r = rig({ expectedIntervalMs: 1000 });
    r.state.now = T;
    r.session.opened();
    r.state.now = T + 1000;
    r.session.push(Uint8Array.of(1, 2, 3, 0, 9, 9, 0));
    expect(r.session.silenceDeadline()).toBe(T + 1500);
    r.session.push(encodeFrame({ type: 'result', seq: 3, id: 1, ok: true }));
    expect(r.session.silenceDeadline()).toBe(T + 2500);
  });

  it('issue 19.2: text framings have no HELLO to ask for: a configured interval reopens a silent port; unconfigured, they are not watched', async () => {
    const r = rig({ framing: 'key-value', device: 'board', expectedIntervalMs: 2000 });
    r.state.now = T;
    r.session.opened();
    r.session.push(new TextEncoder().encode('t=1\n'));
    await r.settle();
    expect(r.session.silenceDeadline()).toBe(T + 3000);
    r.state.now = T + 3000;
    r.session.checkSilence(T + 3000);
    expect(r.reopens()).toBe(1);
    expect(r.written).toEqual([]);
    expect(r.session.counters).toMatchObject({ silences: 1, silenceProbes: 0, silenceReopens: 1 });
    expect(r.logs.filter((l) => l.event === 'port-silent').map((l) => l.fields.next)).toEqual(['reopen']);
    const plain = rig({ framing: 'json-lines', device: 'board' });
    plain.session.opened();
    expect(plain.session.silenceDeadline()).toBe(Number.POSITIVE_INFINITY);
  });
});

describe('SeqWindow', () => {
  it('remembers seqs within half the space, forgets them after the wrap', () => {
    const w = new SeqWindow();
    expect(w.has(0)).toBe(false);
    w.add(0);
    w.add(5);
    expect(w.has(0)).toBe(true);
    expect(w.has(3)).toBe(false);
    for (let s = 6; s < 0x10000 + 10; s++) w.add(s & 0xffff);
    // 0..9 came round again: seen in this lap, yes; the old lap's bits were cleared on the way.
    expect(w.has(5)).toBe(true);
    expect(w.has(20)).toBe(false);
  });

  it('matches a reference set over random walks (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -40, max: 200 }), { maxLength: 500 }), (steps) => {
        const w = new SeqWindow();
        const ref = new Map<number, number>(); // seq -> absolute position when added
        let pos = 1000;
        let highest = -1;
        for (const st of steps) {
          pos = Math.max(0, pos + st);
          const seq = pos & 0xffff;
          // Reference: seen iff added at an absolute position within 32767 below the highest.
          const at = ref.get(seq);
          const expectSeen = at !== undefined && at === pos;
          if (highest - pos < 0x8000) expect(w.has(seq)).toBe(expectSeen);
          w.add(seq);
          ref.set(seq, pos);
          highest = Math.max(highest, pos);
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('issue 18.4: HELD from the device session', () => {
  const helloH = (ringSize: number, bootId = 1): Frame => ({ ...(hello(bootId) as HelloFrame), ringSize });
  const helds = (r: ReturnType<typeof rig>) =>
    r.written.filter((f) => f.type === 'held') as Array<Extract<Frame, { type: 'held' }>>;

  it('issue 18.4: a device whose HELLO said h gets HELD (seq, boot, t) for each frame taken, then the ACK after the store', async () => {
    const r = rig({ holdMs: 9000 });
    r.session.push(encodeFrame(helloH(32)));
    r.state.mode = 'hold';
    r.session.push(encodeFrame(data(1)));
    expect(helds(r)).toEqual([{ type: 'held', seq: 1, bootId: 1, holdMs: 9000 }]);
    expect(r.acks()).toEqual([]);
    // a resend while it is still being stored: held again, not stored twice
    r.session.push(encodeFrame(data(1)));
    expect(helds(r).length).toBe(2);
    expect(r.session.counters.duplicatesInFlight).toBe(1);
    for (const release of r.state.held.splice(0)) release();
    await r.settle();
    expect(r.acks()).toEqual([1]);
    expect(r.stored.length).toBe(2);
    expect(r.session.counters.heldSent).toBe(2);
  });

  it('issue 18.4: no HELD without h, without a window (holdMs 0), or for a boot whose HELLO was not heard', async () => {
    const old = rig({ holdMs: 9000 });
    old.session.push(encodeFrame(hello(1)));
    old.session.push(encodeFrame(data(1)));
    await old.settle();
    expect(helds(old)).toEqual([]);
    expect(old.acks()).toEqual([1]);
    const noWindow = rig({});
    noWindow.session.push(encodeFrame(helloH(32)));
    noWindow.session.push(encodeFrame(data(1)));
    await noWindow.settle();
    expect(helds(noWindow)).toEqual([]);
    // the device reset and its new HELLO was lost: what the new boot understands is not known
    const reset = rig({ holdMs: 9000 });
    reset.session.push(encodeFrame(helloH(32, 1)));
    reset.session.push(encodeFrame(data(1, 2)));
    await reset.settle();
    expect(helds(reset)).toEqual([]);
    reset.session.push(encodeFrame(helloH(32, 2)));
    reset.session.push(encodeFrame(data(2, 2)));
    expect(helds(reset).map((f) => [f.seq, f.bootId])).toEqual([[2, 2]]);
  });

  it('issue 18.4: a commit is asked for when the frames held for a device reach half its ring', async () => {
    const r = rig({ holdMs: 60_000 });
    r.session.push(encodeFrame(helloH(8)));
    r.state.mode = 'hold';
    for (let s = 1; s <= 3; s++) r.session.push(encodeFrame(data(s)));
    expect(r.commits()).toBe(0);
    r.session.push(encodeFrame(data(4)));
    expect(r.commits()).toBe(1);
    expect(r.session.counters.earlyCommits).toBe(1);
    for (const release of r.state.held.splice(0)) release();
    await r.settle();
    expect(r.acks()).toEqual([1, 2, 3, 4]);
    // stored: the count starts again
    r.session.push(encodeFrame(data(5)));
    expect(r.commits()).toBe(1);
  });
});
