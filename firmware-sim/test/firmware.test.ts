import {
  type DataFrame,
  encodeFrame,
  type Frame,
  FrameDecoder,
  type HelloFrame,
  type ResultFrame,
  TextLineDecoder,
  type Value,
} from '@mqtt-edge/serial-protocol';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Firmware, type FirmwareOptions, Rng, SIM_COMMANDS } from '../src/index.ts';

const T0 = 1_000_000;

function fw(over: Partial<FirmwareOptions> = {}): {
  f: Firmware;
  d: FrameDecoder;
  out: () => Frame[];
  raw: () => Uint8Array[];
} {
  const f = new Firmware(
    { deviceId: 'dev-1', rng: new Rng(42), intervalMs: 1000, retransmitMs: 500, ...over },
    T0,
  );
  const d = new FrameDecoder();
  let pending: Uint8Array[] = [];
  const take = () => {
    pending = pending.concat(f.takeOutput());
  };
  return {
    f,
    d,
    out: () => {
      take();
      const frames = pending.flatMap((b) => d.push(b));
      pending = [];
      return frames;
    },
    raw: () => {
      take();
      const r = pending;
      pending = [];
      return r;
    },
  };
}

const ack = (f: Firmware, seq: number, bootId = f.bootId) => encodeFrame({ type: 'ack', seq, bootId });
let cmdId = 100;
function cmd(f: Firmware, name: string, args?: Value, now = T0, id = cmdId++): void {
  const frame: Frame =
    args === undefined ? { type: 'cmd', seq: 0, id, name } : { type: 'cmd', seq: 0, id, name, args };
  f.receive(encodeFrame(frame), now);
}

describe('boot and reporting', () => {
  it('starts with a delimiter and a HELLO at seq 0', () => {
    const { f, raw, d } = fw();
    const chunks = raw();
    expect(Array.from(chunks[0])).toEqual([0]);
    const frames = chunks.slice(1).flatMap((c) => d.push(c));
    expect(frames).toEqual([
      {
        type: 'hello',
        seq: 0,
        deviceId: 'dev-1',
        firmware: 'sim-1.0.0',
        bootId: f.bootId,
        sensors: [
          { name: 'temp', unit: 'Cel' },
          { name: 'hum', unit: '%RH' },
          { name: 'pressure', unit: 'hPa' },
          { name: 'counter' },
        ],
        model: 'firmware-sim',
        commands: SIM_COMMANDS,
        intervalMs: 1000,
        ringSize: 32,
      },
    ]);
  });

  it('reports DATA at the interval with increasing seq, counter and uptime', () => {
    const { f, out } = fw();
    out();
    expect(f.nextDeadline()).toBe(T0 + 1000);
    f.poll(T0 + 999);
    expect(out()).toEqual([]);
    const data: DataFrame[] = [];
    for (let i = 1; i <= 5; i++) {
      f.poll(T0 + 1000 * i);
      const frames = out().filter((x): x is DataFrame => x.type === 'data');
      for (const x of frames) f.receive(ack(f, x.seq), T0 + 1000 * i);
      data.push(...frames);
    }
    expect(data.map((x) => x.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(data.map((x) => x.readings.find((r) => r.sensor === 'counter')?.value)).toEqual([0, 1, 2, 3, 4]);
    expect(data.map((x) => x.readings[0].ts)).toEqual([1000, 2000, 3000, 4000, 5000]);
    for (const x of data) {
      expect(x.bootId).toBe(f.bootId);
      const temp = x.readings.find((r) => r.sensor === 'temp')!;
      expect(temp.value).toBeGreaterThan(15);
      expect(temp.value).toBeLessThan(27);
    }
    expect(f.stats.acked).toBe(5);
    expect(f.unacked).toBe(0);
  });

  it('random walks stay within bounds over a long run', () => {
    const { f, out } = fw({ intervalMs: 10 });
    out();
    let min = Number.POSITIVE_INFINITY;
    let max = Number.NEGATIVE_INFINITY;
    for (let i = 1; i <= 3000; i++) {
      f.poll(T0 + 10 * i);
      for (const x of out()) {
        if (x.type !== 'data') continue;
        f.receive(ack(f, x.seq), T0 + 10 * i);
        const h = x.readings.find((r) => r.sensor === 'hum')!.value;
        min = Math.min(min, h);
        max = Math.max(max, h);
      }
    }
    expect(min).toBeGreaterThanOrEqual(5);
    expect(max).toBeLessThanOrEqual(95);
    expect(max - min).toBeGreaterThan(1); // it does move
  });

  it('the same seed gives the same bytes', () => {
    const run = () => {
      const { f, raw } = fw();
      for (let i = 1; i <= 5; i++) f.poll(T0 + 1000 * i);
      return Buffer.concat(raw()).toString('hex');
    };
    expect(run()).toBe(run());
    const other = new Firmware({ deviceId: 'dev-1', rng: new Rng(43) }, T0);
    expect(other.bootId).not.toBe(fw().f.bootId);
  });

  it('seq wraps from 65535 to 0', () => {
    // No watchdog: nothing is acknowledged here, and its HELLOs would take seqs too.
    const { f, out } = fw({ intervalMs: 10, ringSize: 1, maxRetransmitsPerPoll: 0, watchdogMs: 0 });
    out();
    let last = -1;
    let wrapped = false;
    for (let i = 1; i <= 65540; i++) {
      f.poll(T0 + 10 * i);
      const frames = f.takeOutput();
      if (i >= 65530) {
        const s = new FrameDecoder().push(frames[0])[0].seq;
        if (s < last) wrapped = true;
        last = s;
      }
    }
    expect(wrapped).toBe(true);
    expect(last).toBe(4);
  });
});

describe('retransmission ring', () => {
  it('retransmits the same bytes until acknowledged, then stops', () => {
    const { f, raw, d } = fw();
    raw();
    f.poll(T0 + 1000);
    const [first] = raw();
    const seq = d.push(first)[0].seq;
    expect(f.nextDeadline()).toBe(T0 + 1500);
    f.poll(T0 + 1499);
    expect(raw()).toEqual([]);
    f.poll(T0 + 1500);
    const again = raw();
    expect(again.map((b) => Buffer.from(b).toString('hex'))).toEqual([Buffer.from(first).toString('hex')]);
    f.poll(T0 + 2000); // retransmit of the first + next sample
    expect(raw().length).toBe(2);
    f.receive(ack(f, seq), T0 + 2001);
    f.receive(ack(f, seq), T0 + 2002); // duplicate ACK
    expect(f.stats).toMatchObject({ acked: 1, acksUnknown: 1, retransmits: 2 });
    f.poll(T0 + 2600);
    const frames = raw().flatMap((b) => d.push(b));
    expect(frames.every((x) => x.seq !== seq)).toBe(true);
  });

  it('ignores an ACK for another boot', () => {
    const { f, out } = fw();
    out();
    f.poll(T0 + 1000);
    const [data] = out();
    f.receive(ack(f, data.seq, (f.bootId + 1) >>> 0), T0 + 1001);
    expect(f.stats.acksWrongBoot).toBe(1);
    expect(f.unacked).toBe(1);
  });

  it('overwrites the oldest entry when full and counts it', () => {
    // No watchdog: nothing is acknowledged here, and its HELLOs would take seqs too.
    const { f, out } = fw({ ringSize: 4, retransmitMs: 100_000, watchdogMs: 0 });
    out();
    for (let i = 1; i <= 6; i++) f.poll(T0 + 1000 * i);
    out();
    expect(f.stats.ringOverwrites).toBe(2);
    expect(f.unacked).toBe(4);
    expect(
      f
        .takeEvents()
        .filter((e) => e.event === 'ring-overwrite')
        .map((e) => e.seq),
    ).toEqual([1, 2]);
    f.poll(T0 + 200_000);
    expect(out().map((x) => x.seq)).toEqual([3, 4, 5, 6, 7]); // retransmits, then the new sample
  });

  it('limits retransmissions per poll, oldest first', () => {
    const { f, out } = fw({ ringSize: 32, retransmitMs: 100_000, maxRetransmitsPerPoll: 3 });
    out();
    f.burst(10, T0);
    out();
    f.poll(T0 + 100_000);
    expect(
      out()
        .filter((x) => x.type === 'data')
        .map((x) => x.seq)
        .slice(0, 3),
    ).toEqual([1, 2, 3]);
    expect(f.stats.retransmits).toBe(3);
  });

  it('a burst sends n DATA frames at once', () => {
    const { f, out } = fw();
    out();
    f.burst(25, T0 + 1);
    const frames = out();
    expect(frames.length).toBe(25);
    expect(frames.map((x) => x.seq)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
  });
});

describe('commands', () => {
  const results = (frames: Frame[]) => frames.filter((x): x is ResultFrame => x.type === 'result');

  it('ping, status, set-led, relay', () => {
    const { f, out } = fw();
    out();
    cmd(f, 'ping', undefined, T0, 1);
    cmd(f, 'set-led', true, T0, 2);
    cmd(f, 'relay', { on: true }, T0, 3);
    cmd(f, 'status', undefined, T0 + 5, 4);
    const r = results(out());
    expect(r.map((x) => [x.id, x.ok, x.value])).toEqual([
      [1, true, 'pong'],
      [2, true, true],
      [3, true, true],
      [4, true, { uptime: 5, interval: 1000, led: true, relay: true, mode: 'normal', unacked: 0 }],
    ]);
    expect(f.led && f.relay).toBe(true);
    expect(r.map((x) => x.seq)).toEqual([1, 2, 3, 4]); // results take device seqs
  });

  it('set-interval changes the schedule; bad values are error RESULTs', () => {
    const { f, out } = fw();
    out();
    cmd(f, 'set-interval', 250, T0 + 100, 10);
    expect(f.nextDeadline()).toBe(T0 + 350);
    cmd(f, 'set-interval', { ms: 5 }, T0 + 100, 11);
    cmd(f, 'set-interval', 'fast', T0 + 100, 12);
    cmd(f, 'set-led', { on: 'yes' }, T0 + 100, 13);
    const r = results(out());
    expect(r.map((x) => x.ok)).toEqual([true, false, false, false]);
    expect(r[1].error).toMatch(/interval/);
    expect(f.intervalMs).toBe(250);
    expect(f.stats.commandErrors).toBe(3);
  });

  it('issue 14.1: set-mode takes one of its options, bare or as {"mode": ...}', () => {
    const { f, out } = fw();
    out();
    cmd(f, 'set-mode', 'eco', T0, 50);
    cmd(f, 'set-mode', { mode: 'boost' }, T0, 51);
    cmd(f, 'set-mode', 'turbo', T0, 52);
    const r = results(out());
    expect(r.map((x) => [x.ok, x.value ?? x.error])).toEqual([
      [true, 'eco'],
      [true, 'boost'],
      [false, 'mode must be one of eco, normal, boost'],
    ]);
    expect(f.powerMode).toBe('boost');
  });

  it('issue 14.1: every command its HELLO describes runs as described; stateful kinds answer the new state', () => {
    const { f, out } = fw();
    const hello = out().find((x): x is HelloFrame => x.type === 'hello')!;
    expect(hello.commands?.length).toBeGreaterThan(0);
    let id = 600;
    for (const c of hello.commands!) {
      const value: Value | undefined =
        c.kind === 'button'
          ? undefined
          : c.kind === 'switch'
            ? true
            : c.kind === 'number'
              ? c.max
              : c.options[c.options.length - 1];
      const arg = c.kind === 'button' ? undefined : c.arg;
      const args = value === undefined || arg === undefined ? value : { [arg]: value };
      cmd(f, c.name, args, T0, id++);
      const r = results(out());
      expect(r.length, c.name).toBe(1);
      expect(r[0].ok, c.name).toBe(true);
      if (c.kind !== 'button') expect(r[0].value, c.name).toEqual(value);
    }
  });

  it('unknown command is an error RESULT, not a crash', () => {
    const { f, out } = fw();
    out();
    cmd(f, 'self-destruct', { now: true }, T0, 20);
    expect(results(out())).toEqual([
      { type: 'result', seq: 1, id: 20, ok: false, error: 'unknown command self-destruct' },
    ]);
  });

  it('a repeated command id is answered from the cache, not run twice', () => {
    const { f, out } = fw();
    out();
    cmd(f, 'relay', true, T0, 30);
    cmd(f, 'relay', false, T0, 30);
    const r = results(out());
    expect(r.map((x) => x.value)).toEqual([true, true]);
    expect(f.relay).toBe(true);
    expect(f.stats.commandRepeats).toBe(1);
  });

  it('hello re-sends the HELLO', () => {
    const { f, out } = fw();
    out();
    cmd(f, 'hello', undefined, T0, 40);
    expect(out().map((x) => x.type)).toEqual(['result', 'hello']);
  });

  it('reboot answers, then comes back with a new boot id, seq from 0 and an empty ring', () => {
    const { f, out } = fw();
    out();
    f.poll(T0 + 1000);
    f.poll(T0 + 2000);
    out();
    const oldBoot = f.bootId;
    expect(f.unacked).toBe(2);
    cmd(f, 'reboot', undefined, T0 + 2100, 50);
    const frames = out();
    expect(frames.map((x) => x.type)).toEqual(['result', 'hello']);
    expect((frames[0] as ResultFrame).ok).toBe(true);
    const hello = frames[1] as HelloFrame;
    expect(hello.bootId).not.toBe(oldBoot);
    expect(hello.seq).toBe(0);
    expect(f.unacked).toBe(0);
    expect(f.stats.boots).toBe(2);
    f.poll(T0 + 3100);
    const data = out()[0] as DataFrame;
    expect([data.seq, data.bootId, data.readings[0].ts]).toEqual([1, hello.bootId, 1000]);
    // An ACK for the old boot's seq 1 does not acknowledge the new boot's seq 1.
    f.receive(ack(f, 1, oldBoot), T0 + 3101);
    expect(f.unacked).toBe(1);
  });

  it('garbage, truncated and hostile frames on its input never crash it', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }), (chunks) => {
        const { f, out } = fw();
        out();
        for (const c of chunks) f.receive(c, T0);
        f.receive(new Uint8Array([0]), T0);
        cmd(f, 'ping', undefined, T0, 99);
        expect(results(out()).at(-1)).toMatchObject({ id: 99, ok: true });
      }),
      { numRuns: 100 },
    );
  });
});

describe('text modes', () => {
  it('json-lines: a banner comment, then one JSON object of all sensors per interval, no frames', () => {
    const { f, raw } = fw({ mode: 'json-lines' });
    f.poll(T0 + 1000);
    f.poll(T0 + 2000);
    const d = new TextLineDecoder({ mode: 'json-lines' });
    const recs = raw().flatMap((b) => d.push(b));
    expect(recs.length).toBe(2);
    expect(recs[1].readings.map((r) => r.sensor)).toEqual(['temp', 'hum', 'pressure', 'counter']);
    expect(d.stats).toMatchObject({ skipped: 1, syntaxErrors: 0, valueErrors: 0 });
    expect(f.unacked).toBe(0);
  });

  it('key-value', () => {
    const { f, raw } = fw({ mode: 'key-value' });
    f.poll(T0 + 1000);
    const lines = raw().map((b) => Buffer.from(b).toString('utf8'));
    expect(lines[1]).toMatch(/^temp=[-\d.]+ hum=[\d.]+ pressure=[\d.]+ counter=0\n$/);
    const d = new TextLineDecoder({ mode: 'key-value' });
    expect(d.push(Buffer.from(lines.join(''))).length).toBe(1);
  });
});

describe('issue 19.3: liveness on the device side', () => {
  const hellos = (frames: Frame[]) => frames.filter((x): x is HelloFrame => x.type === 'hello');

  it('issue 19.3: HELLO says the reporting interval (p); set-interval answers, then says the new one in a HELLO', () => {
    const { f, out } = fw({ intervalMs: 1000 });
    expect(hellos(out())[0].intervalMs).toBe(1000);
    cmd(f, 'set-interval', 250, T0 + 10, 900);
    const frames = out();
    expect(frames.map((x) => x.type)).toEqual(['result', 'hello']);
    expect(hellos(frames)[0]).toMatchObject({ intervalMs: 250, bootId: f.bootId });
    // A refused interval changes nothing and says nothing more.
    cmd(f, 'set-interval', 5, T0 + 20, 901);
    expect(out().map((x) => x.type)).toEqual(['result']);
    // announceInterval: false is a HELLO as firmware sent it before issue 19.
    const old = fw({ announceInterval: false });
    expect(hellos(old.out())[0]).not.toHaveProperty('intervalMs');
  });

  it('issue 19.3: a device that hears nothing for watchdogMs sends HELLO again (same boot), every watchdogMs while it hears nothing; one event per quiet spell', () => {
    const { f, out } = fw({ intervalMs: 1000, retransmitMs: 100_000, watchdogMs: 3000 });
    out();
    f.takeEvents();
    expect(f.nextDeadline()).toBe(T0 + 1000);
    const typesUntil = (t: number) => {
      const seen: string[] = [];
      while (f.nextDeadline() <= t) {
        f.poll(f.nextDeadline());
        seen.push(...out().map((x) => x.type));
      }
      return seen;
    };
    // Three DATA, no ACK: at 3 s the watchdog sends HELLO along with the third DATA.
    expect(typesUntil(T0 + 2999)).toEqual(['data', 'data']);
    expect(typesUntil(T0 + 3000).sort()).toEqual(['data', 'hello']);
    expect(f.stats.watchdogHellos).toBe(1);
    // Again at 6 s and 9 s while nothing is heard; one event for the spell.
    typesUntil(T0 + 9000);
    expect(f.stats.watchdogHellos).toBe(3);
    const quiet = f.takeEvents().filter((e) => e.event === 'watchdog-hello');
    expect(quiet).toEqual([{ event: 'watchdog-hello', quietMs: 3000, bootId: f.bootId }]);
    // An ACK is a frame heard: the spell ends (one event), and the clock restarts from it.
    f.receive(ack(f, 1), T0 + 9500);
    expect(f.takeEvents()).toEqual([{ event: 'heard-again', quietMs: 9500, watchdogHellos: 3 }]);
    expect(typesUntil(T0 + 12_499).filter((t) => t === 'hello')).toEqual([]);
    expect(typesUntil(T0 + 12_500).filter((t) => t === 'hello')).toEqual(['hello']);
    // The boot and its seq carry on: a watchdog HELLO is not a reset.
    expect(f.stats.boots).toBe(1);
  });

  it('issue 19.3: bytes that decode to no frame are not hearing; the default watchdog is 3 intervals (at least 3 s); 0 turns it off', () => {
    const { f, out } = fw({ intervalMs: 500, retransmitMs: 100_000 });
    out();
    f.receive(Uint8Array.of(1, 2, 3, 0), T0 + 100);
    f.poll(T0 + 2999);
    expect(hellos(out())).toEqual([]);
    f.poll(T0 + 3000);
    expect(hellos(out()).length).toBe(1);
    const slow = fw({ intervalMs: 2000, retransmitMs: 100_000 });
    slow.out();
    slow.f.poll(T0 + 5999);
    expect(hellos(slow.out())).toEqual([]);
    slow.f.poll(T0 + 6000);
    expect(hellos(slow.out()).length).toBe(1);
    const off = fw({ intervalMs: 500, retransmitMs: 100_000, watchdogMs: 0 });
    off.out();
    for (let t = 500; t <= 60_000; t += 500) off.f.poll(T0 + t);
    expect(hellos(off.out())).toEqual([]);
    expect(off.f.stats.watchdogHellos).toBe(0);
  });

  it('issue 19.3: text-mode boards have no HELLO and no watchdog', () => {
    const { f, raw } = fw({ mode: 'key-value', intervalMs: 500 });
    raw();
    for (let t = 500; t <= 20_000; t += 500) f.poll(T0 + t);
    expect(f.stats.watchdogHellos).toBe(0);
    expect(Buffer.concat(raw()).toString('latin1')).not.toMatch(/hello/i);
  });
});

describe('issue 18.4: HELD (received, not yet durable)', () => {
  const held = (f: Firmware, seq: number, holdMs: number, bootId = f.bootId) =>
    encodeFrame({ type: 'held', seq, bootId, holdMs });

  it('issue 18.4: HELLO says h = its ring size; understandsHeld false sends a HELLO as before', () => {
    const { out } = fw({ ringSize: 24 });
    const hello = out().find((x) => x.type === 'hello') as HelloFrame;
    expect(hello.ringSize).toBe(24);
    const old = fw({ understandsHeld: false });
    const oldHello = old.out().find((x) => x.type === 'hello') as HelloFrame;
    expect(oldHello).toBeDefined();
    expect(oldHello.ringSize).toBeUndefined();
  });

  it('issue 18.4: a held entry is not resent before t, stays in the ring, and only the ACK retires it', () => {
    const { f, out } = fw({ retransmitMs: 500, watchdogMs: 0, intervalMs: 100_000 });
    out();
    f.burst(1, T0 + 1000);
    const [data] = out();
    f.receive(held(f, data.seq, 8000), T0 + 1010);
    expect(f.stats.held).toBe(1);
    expect(f.unacked).toBe(1);
    // due again only at T0 + 9010, not at T0 + 1500
    for (let t = T0 + 1100; t < T0 + 9010; t += 100) f.poll(t);
    expect(out().filter((x) => x.seq === data.seq)).toEqual([]);
    expect(f.stats.retransmits).toBe(0);
    expect(f.unackedSeqs()).toContain(data.seq);
    f.receive(ack(f, data.seq), T0 + 9000);
    expect(f.unackedSeqs()).not.toContain(data.seq);
    expect(f.stats.acked).toBe(1);
  });

  it('issue 18.4: when t runs out without an ACK the entry is sent again, then on the normal timer', () => {
    const { f, out, raw } = fw({ retransmitMs: 500, watchdogMs: 0, intervalMs: 100_000 });
    out();
    f.burst(1, T0);
    const [data] = out();
    f.receive(held(f, data.seq, 3000), T0 + 10);
    expect(f.nextDeadline()).toBe(T0 + 3010);
    f.poll(T0 + 3009);
    expect(raw()).toEqual([]);
    f.poll(T0 + 3010);
    expect(out().map((x) => x.seq)).toEqual([data.seq]);
    expect(f.stats.retransmits).toBe(1);
    // the hold is spent: the next send comes retransmitMs later
    expect(f.nextDeadline()).toBe(T0 + 3510);
  });

  it('issue 18.4: a HELD never brings a send earlier, and t is capped at maxHoldMs', () => {
    const { f, out } = fw({ retransmitMs: 500, watchdogMs: 0, intervalMs: 100_000, maxHoldMs: 20_000 });
    out();
    f.burst(1, T0);
    const [data] = out();
    f.receive(held(f, data.seq, 3_600_000), T0);
    expect(f.nextDeadline()).toBe(T0 + 20_000);
    f.receive(held(f, data.seq, 1000), T0 + 100);
    expect(f.nextDeadline()).toBe(T0 + 20_000);
  });

  it('issue 18.4: a HELD for another boot or a seq not in the ring changes nothing and is counted', () => {
    const { f, out } = fw({ retransmitMs: 500, watchdogMs: 0, intervalMs: 100_000 });
    out();
    f.burst(1, T0);
    const [data] = out();
    f.receive(held(f, data.seq, 9000, (f.bootId + 1) >>> 0), T0 + 1);
    f.receive(held(f, (data.seq + 5) & 0xffff, 9000), T0 + 2);
    expect(f.stats).toMatchObject({ held: 0, heldUnknown: 2 });
    expect(f.nextDeadline()).toBe(T0 + 500);
  });

  it('issue 18.4: firmware without HELD (understandsHeld false) ignores it and resends on its timeout', () => {
    const { f, out } = fw({ retransmitMs: 500, watchdogMs: 0, intervalMs: 100_000, understandsHeld: false });
    out();
    f.burst(1, T0);
    const [data] = out();
    f.receive(held(f, data.seq, 9000), T0 + 1);
    expect(f.stats.held).toBe(0);
    expect(f.stats.heldIgnored).toBe(1);
    f.poll(T0 + 500);
    expect(out().map((x) => x.seq)).toEqual([data.seq]);
    f.receive(ack(f, data.seq), T0 + 600);
    expect(f.unacked).toBe(0);
  });
});
