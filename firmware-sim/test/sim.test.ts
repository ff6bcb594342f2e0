import { type DataFrame, encodeFrame, type Frame } from '@mqtt-edge/serial-protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { createLinkPair, FirmwareSim, type FirmwareSimOptions, InProcessTransport } from '../src/index.ts';
import { HostReader, isData, isHello, isResult } from './helpers.ts';

const running: FirmwareSim[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()));
});

function setup(options: Partial<FirmwareSimOptions> = {}, autoAck = true) {
  const pair = createLinkPair();
  const sim = new FirmwareSim(new InProcessTransport(pair), {
    deviceId: 'sim-a',
    seed: 1,
    intervalMs: 10,
    retransmitMs: 40,
    ...options,
  });
  running.push(sim);
  const host = new HostReader();
  const seen = new Set<number>();
  let cmdId = 1;
  pair.host.on('data', (b: Buffer) => {
    const before = host.frames.length;
    host.feed(b);
    for (const f of host.frames.slice(before)) {
      if (f.type !== 'data') continue;
      seen.add(f.seq);
      if (autoAck) pair.host.write(encodeFrame({ type: 'ack', seq: f.seq, bootId: f.bootId }));
    }
  });
  const send = (f: Frame) => pair.host.write(encodeFrame(f));
  /** Round trip through the firmware's input: everything written before it has been handled. */
  const sync = async () => {
    const id = cmdId++;
    const from = host.frames.length;
    send({ type: 'cmd', seq: 0, id, name: 'ping' });
    await host.result((f) => f.id === id, 5000, from);
  };
  /** Waits until DATA seqs 1..n have all arrived at least once. */
  const allUpTo = (n: number, timeoutMs = 10_000) =>
    new Promise<void>((resolve, reject) => {
      const deadline = Date.now() + timeoutMs;
      const check = () => {
        let ok = true;
        for (let s = 1; s <= n; s++) if (!seen.has(s)) ok = false;
        if (ok) return resolve();
        if (Date.now() > deadline)
          return reject(
            new Error(`missing seqs: ${[...Array(n).keys()].map((i) => i + 1).filter((s) => !seen.has(s))}`),
          );
        host.next(isData, timeoutMs, host.frames.length).then(check, reject);
      };
      check();
    });
  return { pair, sim, host, seen, send, sync, allUpTo };
}

describe('FirmwareSim over the in-process link', () => {
  it('HELLO on start, DATA with increasing seq, acknowledged readings leave the ring', async () => {
    const { sim, host, sync } = setup();
    sim.start();
    const hello = await host.next(isHello);
    expect(hello).toMatchObject({ seq: 0, deviceId: 'sim-a', bootId: sim.firmware.bootId });
    await host.data((f) => f.seq >= 5);
    const seqs = host.frames.filter(isData).map((f) => f.seq);
    expect(seqs.slice(0, 5)).toEqual([1, 2, 3, 4, 5]);
    await sync();
    expect(sim.firmware.stats.acked).toBeGreaterThanOrEqual(5);
    expect(sim.firmware.unacked).toBeLessThanOrEqual(2);
    expect(host.decoder.stats.crcErrors + host.decoder.stats.cobsErrors).toBe(0);
  });

  it('retransmits until acknowledged', async () => {
    const { sim, host, send, sync } = setup({ intervalMs: 200, retransmitMs: 30 }, false);
    sim.start();
    const first = (await host.data((f) => f.seq === 1, 3000)) as DataFrame;
    const idx = host.frames.indexOf(first);
    const again = await host.data((f) => f.seq === 1, 3000, idx + 1);
    expect(again).toEqual(first);
    send({ type: 'ack', seq: 1, bootId: first.bootId });
    await sync();
    expect(sim.firmware.unacked).toBe(0);
    expect(sim.firmware.stats.retransmits).toBeGreaterThanOrEqual(1);
  });

  it('with nobody acknowledging, the ring overflows: counted, and the oldest seqs stop coming', async () => {
    const { sim, host } = setup({ ringSize: 4, intervalMs: 20, retransmitMs: 10 }, false);
    sim.start();
    await host.data((f) => f.seq >= 8);
    const from = host.frames.length;
    expect(sim.firmware.stats.ringOverwrites).toBeGreaterThanOrEqual(4);
    expect(sim.firmware.unacked).toBe(4);
    const held = sim.firmware.unackedSeqs();
    // From now on only what the ring holds (or newer) is retransmitted; seq 1 is gone for good.
    await host.data((f) => held.includes(f.seq), 5000, from);
    await host.data((f) => f.seq > held[held.length - 1], 5000, from);
    const later = host.frames
      .slice(from)
      .filter(isData)
      .map((f) => f.seq);
    expect(later.every((q) => q >= held[0])).toBe(true);
  });

  it('sets the interval and the LED by command; unknown command is an error RESULT', async () => {
    const { sim, host, send } = setup();
    sim.start();
    await host.next(isHello);
    send({ type: 'cmd', seq: 1, id: 7, name: 'set-interval', args: { ms: 25 } });
    send({ type: 'cmd', seq: 2, id: 8, name: 'set-led', args: true });
    send({ type: 'cmd', seq: 3, id: 9, name: 'fly' });
    const r9 = await host.result((f) => f.id === 9);
    expect(r9).toMatchObject({ ok: false, error: 'unknown command fly' });
    expect(host.frames.filter(isResult).map((r) => [r.id, r.ok])).toEqual([
      [7, true],
      [8, true],
      [9, false],
    ]);
    expect(sim.firmware.intervalMs).toBe(25);
    expect(sim.firmware.led).toBe(true);
  });

  it('reboot by command: RESULT, then HELLO with a new boot id and seq from 0', async () => {
    const { sim, host, send } = setup();
    sim.start();
    const h1 = await host.next(isHello);
    await host.data((f) => f.seq >= 3);
    send({ type: 'cmd', seq: 1, id: 77, name: 'reboot' });
    await host.result((f) => f.id === 77 && f.ok);
    const h2 = await host.hello((f) => f.bootId !== h1.bootId);
    expect(h2.seq).toBe(0);
    const d = await host.data((f) => f.bootId === h2.bootId);
    expect(d.seq).toBe(1);
  });

  it('fault: garbage before a frame costs that frame once; retransmission recovers it', async () => {
    const { sim, host, allUpTo } = setup();
    sim.start();
    await host.data((f) => f.seq === 2);
    sim.faults.garbageNext(Uint8Array.of(0x13, 0x37, 0x42));
    await allUpTo(8);
    expect(sim.faults.stats.garbageBursts).toBe(1);
    expect(
      host.decoder.stats.cobsErrors + host.decoder.stats.crcErrors + host.decoder.stats.shortFrames,
    ).toBe(1);
  });

  for (const fault of ['bitflip', 'drop'] as const) {
    it(`fault: ${fault} is detected (CRC/COBS) and the frame is retransmitted`, async () => {
      const { sim, host, allUpTo } = setup();
      sim.start();
      await host.data((f) => f.seq === 2);
      if (fault === 'bitflip') sim.faults.bitflipNext();
      else sim.faults.dropNext();
      await allUpTo(8);
      const s = host.decoder.stats;
      expect(s.crcErrors + s.cobsErrors + s.shortFrames + s.oversize).toBeGreaterThanOrEqual(1);
      expect(sim.faults.stats[fault === 'bitflip' ? 'bitflips' : 'drops']).toBe(1);
      // Only whole, original frames come out: every DATA seq decoded maps to one reading set.
      const bySeq = new Map<number, string>();
      for (const f of host.frames.filter(isData)) {
        const j = JSON.stringify(f);
        expect(bySeq.get(f.seq) ?? j).toBe(j);
        bySeq.set(f.seq, j);
      }
    });
  }

  it('fault: reset in the middle of a frame; the leading 0x00 keeps the new HELLO', async () => {
    const { sim, host } = setup();
    sim.start();
    const h1 = await host.next(isHello);
    await host.data((f) => f.seq >= 2);
    sim.resetMidFrame();
    const h2 = await host.hello((f) => f.bootId !== h1.bootId);
    expect(h2.seq).toBe(0);
    const s = host.decoder.stats;
    expect(s.cobsErrors + s.crcErrors + s.shortFrames).toBe(1);
    expect(sim.stats.resetsMidFrame).toBe(1);
  });

  it('without the leading 0x00 a reset mid-frame swallows the HELLO; a `hello` command recovers it', async () => {
    const { sim, host, send } = setup({ leadingDelimiter: false });
    sim.start();
    const h1 = await host.next(isHello);
    await host.data((f) => f.seq >= 2);
    sim.resetMidFrame();
    // The first DATA of the new boot tells the agent the boot id changed.
    const d = await host.data((f) => f.bootId !== h1.bootId);
    expect(host.frames.some((f) => isHello(f) && f.bootId === d.bootId)).toBe(false);
    send({ type: 'cmd', seq: 0, id: 5, name: 'hello' });
    const h2 = await host.hello((f) => f.bootId === d.bootId);
    expect(h2.deviceId).toBe('sim-a');
  });

  it('fault: a burst of 50 readings arrives whole', async () => {
    const { sim, host, allUpTo } = setup({ intervalMs: 60_000 });
    sim.start();
    await host.next(isHello);
    sim.burst(50);
    await allUpTo(50);
    expect(host.frames.filter(isData).length).toBeGreaterThanOrEqual(50);
  });

  it('fault: unplugged for a while, the readings taken meanwhile arrive after the replug', async () => {
    const { sim, host, allUpTo } = setup({ intervalMs: 10, retransmitMs: 30 });
    sim.start();
    await host.data((f) => f.seq >= 2);
    const seqBefore = sim.firmware.nextSeq;
    const unplugged = sim.unplug(150);
    expect(sim.transport.plugged).toBe(false);
    await unplugged;
    expect(sim.transport.plugged).toBe(true);
    expect(sim.stats.bytesLostUnplugged).toBeGreaterThan(0);
    const seqAfter = sim.firmware.nextSeq;
    expect(seqAfter - seqBefore).toBeGreaterThanOrEqual(5); // it kept sampling while unplugged
    await allUpTo(seqAfter - 1);
    expect(sim.firmware.stats.boots).toBe(1); // an unplugged cable is not a reset
  });

  it('random faults at high rates: every reading still arrives (bounded run)', async () => {
    const { sim, host, allUpTo } = setup({ faults: { garbage: 0.2, bitflip: 0.1, drop: 0.1 }, seed: 99 });
    sim.start();
    await allUpTo(40, 20_000);
    const s = host.decoder.stats;
    expect(s.crcErrors + s.cobsErrors + s.shortFrames).toBeGreaterThan(0);
    expect(sim.firmware.stats.ringOverwrites).toBe(0);
  });
});

describe('FirmwareSim: the repeating fault schedules (resetEveryMs, burstEveryMs, unplugEveryMs)', () => {
  it('each fires repeatedly, does what it says, and stops with the sim', async () => {
    const events: Array<{ event: string; fields: Record<string, unknown> }> = [];
    const { sim, host } = setup({
      intervalMs: 20,
      resetEveryMs: 230,
      burstEveryMs: 170,
      burstSize: 6,
      unplugEveryMs: 310,
      unplugForMs: 100,
      log: { log: (_l, event, fields = {}) => events.push({ event, fields }) },
    });
    const count = (e: string) => events.filter((x) => x.event === e).length;
    sim.start();
    const deadline = Date.now() + 5000;
    while (count('reset-mid-frame') < 3 || count('burst') < 3 || count('plugged') < 2) {
      if (Date.now() > deadline) throw new Error(`schedules did not run: ${JSON.stringify(sim.stats)}`);
      await host.next(() => true, 2000, host.frames.length).catch(() => undefined);
    }
    expect(sim.stats.resetsMidFrame).toBeGreaterThanOrEqual(3);
    expect(sim.stats.bursts).toBeGreaterThanOrEqual(3);
    expect(sim.stats.unplugs).toBeGreaterThanOrEqual(2);
    // Resets: a new boot id each time, announced by a HELLO.
    const boots = events.filter((e) => e.event === 'reset-mid-frame').map((e) => e.fields.bootId);
    expect(new Set(boots).size).toBe(boots.length);
    const hellos = new Set(host.frames.filter(isHello).map((f) => f.bootId));
    expect(boots.filter((b) => !hellos.has(b as number)).length).toBeLessThanOrEqual(1); // one may fall in an unplug
    expect(sim.firmware.stats.boots).toBe(1 + sim.stats.resetsMidFrame);
    // Bursts: burstSize DATA frames of one boot sampled in the same millisecond.
    const byTs = new Map<string, Set<number>>();
    for (const f of host.frames.filter(isData)) {
      const k = `${f.bootId}:${f.readings[0].ts}`;
      byTs.set(k, (byTs.get(k) ?? new Set()).add(f.seq));
    }
    expect(Math.max(...[...byTs.values()].map((s) => s.size))).toBeGreaterThanOrEqual(6);
    // Unplugs: the link went down and came back, one unplug at a time.
    expect(count('unplugged')).toBeGreaterThanOrEqual(2);
    expect(count('unplugged') - count('plugged')).toBeLessThanOrEqual(1);
    expect(sim.stats.bytesLostUnplugged).toBeGreaterThan(0);

    await sim.stop();
    const after = { ...sim.stats };
    const frames = host.frames.length;
    // Stopped: no schedule fires any more (over twice the longest period; an absence has no event).
    await new Promise((r) => setTimeout(r, 700));
    expect(sim.stats).toEqual(after);
    expect(host.frames.length).toBe(frames);
  });
});
