/**
 * Issue 14.1: when discovery configs are published and cleared, with a scripted broker link (the
 * end-to-end test with a real broker and subscriber is test/e2e-agent-homeassistant.test.ts).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DISCOVERY_STATE_FILE, type DiscoverySettings, HomeAssistantDiscovery } from '../src/discovery.ts';
import type { DeviceDescription } from '../src/homeassistant.ts';
import type { Logger } from '../src/log.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function settings(over: Partial<DiscoverySettings['ctx']> = {}, enabled = true): DiscoverySettings {
  return {
    enabled,
    ctx: {
      prefix: 's',
      agentId: 'gw',
      discoveryPrefix: 'homeassistant',
      nodeId: 'gw',
      payload: 'json',
      readingTopic: (d, x) => `s/${d}/${x}`,
      health: false,
      ...over,
    },
  };
}

/** A discovery whose broker link is a list: `ok` decides whether publishes are acknowledged. */
function rig(ports: string[], s = settings(), dir = mkdtempSync(path.join(os.tmpdir(), 'disc-'))) {
  if (!dirs.includes(dir)) dirs.push(dir);
  const sent: Array<{ topic: string; payload: string }> = [];
  const logged: string[] = [];
  const link = { ok: true };
  const log: Logger = {
    log: (_l, msg) => {
      logged.push(msg);
    },
    enabled: () => true,
  };
  const d = new HomeAssistantDiscovery(dir, s, ports, {
    publish: (topic, payload) => {
      sent.push({ topic, payload });
      return Promise.resolve(link.ok);
    },
    log,
  });
  const settle = () => new Promise((r) => setTimeout(r, 0));
  return { d, sent, logged, link, dir, settle };
}

const dev = (id: string, sensors = ['t', 'h']): DeviceDescription => ({
  id,
  sensors: sensors.map((name) => ({ name })),
});
const topic = (device: string, sensor: string) => `homeassistant/sensor/gw/${device}__${sensor}/config`;
const clears = (sent: Array<{ topic: string; payload: string }>) =>
  sent
    .filter((m) => m.payload === '')
    .map((m) => m.topic)
    .sort();

describe('issue 14.1: discovery publishing and clearing', () => {
  it('issue 14.1: nothing is published before the broker connection; a repeated HELLO sends only what changed', () => {
    const r = rig(['p0']);
    r.d.onHello('p0', dev('a'));
    expect(r.sent).toEqual([]);
    r.d.onConnect();
    expect(r.sent.map((m) => m.topic).sort()).toEqual(
      ['homeassistant/binary_sensor/gw/gateway/config', topic('a', 'h'), topic('a', 't')].sort(),
    );
    r.sent.length = 0;
    r.d.onHello('p0', dev('a'));
    expect(r.sent).toEqual([]);
    r.d.onHello('p0', { ...dev('a'), firmware: '2.0' });
    expect(r.sent.map((m) => m.topic).sort()).toEqual([topic('a', 'h'), topic('a', 't')]);
  });

  it('issue 14.1: a sensor a new HELLO no longer lists is cleared', async () => {
    const r = rig(['p0']);
    r.d.onConnect();
    r.d.onHello('p0', dev('a', ['t', 'h']));
    r.sent.length = 0;
    r.d.onHello('p0', dev('a', ['t']));
    expect(clears(r.sent)).toEqual([topic('a', 'h')]);
    await r.settle();
    expect(r.d.topicsOf('a')).toEqual([topic('a', 't')]);
    expect(JSON.parse(readFileSync(path.join(r.dir, DISCOVERY_STATE_FILE), 'utf8')).clear).toEqual([]);
  });

  it('issue 14.1: a clear the broker did not acknowledge is kept on disk and sent again after a restart', async () => {
    const r = rig(['p0', 'p1']);
    r.d.onConnect();
    r.d.onHello('p1', dev('b'));
    r.link.ok = false;
    r.d.onPortsRemoved(['p1']);
    await r.settle();
    expect(clears(r.sent)).toEqual([topic('b', 'h'), topic('b', 't')]);
    // A new agent on the same state dir: the clear goes out again at its first connection.
    const again = rig(['p0'], settings(), r.dir);
    again.d.onConnect();
    expect(clears(again.sent)).toEqual([topic('b', 'h'), topic('b', 't')]);
    await again.settle();
    expect(JSON.parse(readFileSync(path.join(r.dir, DISCOVERY_STATE_FILE), 'utf8')).clear).toEqual([]);
  });

  it('issue 14.1: a device seen again before its clear is announced, not cleared', async () => {
    const r = rig(['p0', 'p1']);
    r.d.onHello('p1', dev('b'));
    r.d.onPortsRemoved(['p1']); // disconnected: nothing sent yet
    r.d.onHello('p0', dev('b')); // the device moved to p0
    r.d.onConnect();
    await r.settle();
    expect(clears(r.sent)).toEqual([]);
    expect(r.d.topicsOf('b').sort()).toEqual([topic('b', 'h'), topic('b', 't')]);
  });

  it('issue 14.1: a new discovery prefix or node id clears every old topic; turning discovery off clears all', async () => {
    const r = rig(['p0']);
    r.d.onConnect();
    r.d.onHello('p0', dev('a', ['t']));
    r.sent.length = 0;
    r.d.reconfigure(settings({ nodeId: 'gw2' }));
    expect(clears(r.sent)).toEqual(['homeassistant/binary_sensor/gw/gateway/config', topic('a', 't')].sort());
    expect(r.sent.filter((m) => m.payload !== '').map((m) => m.topic)).toContain(
      'homeassistant/sensor/gw2/a__t/config',
    );
    await r.settle();
    r.sent.length = 0;
    r.d.reconfigure(settings({ nodeId: 'gw2' }, false));
    expect(r.sent.every((m) => m.payload === '')).toBe(true);
    expect(r.sent.length).toBe(2);
    // Off at the next start too: nothing published, and what was left is cleared.
    await r.settle();
    const off = rig(['p0'], settings({ nodeId: 'gw2' }, false), r.dir);
    off.d.onConnect();
    off.d.onHello('p0', dev('a'));
    expect(off.sent).toEqual([]);
  });

  it('issue 14.1: a birth message re-announces everything (after a short random delay); retained state survives a torn file', async () => {
    const r = rig(['p0']);
    r.d.onConnect();
    r.d.onHello('p0', dev('a'));
    r.sent.length = 0;
    vi.useFakeTimers();
    try {
      r.d.onBirth();
      expect(r.sent).toEqual([]);
      vi.advanceTimersByTime(1000);
    } finally {
      vi.useRealTimers();
    }
    expect(r.sent.map((m) => m.topic).sort()).toEqual(
      ['homeassistant/binary_sensor/gw/gateway/config', topic('a', 'h'), topic('a', 't')].sort(),
    );
    writeFileSync(path.join(r.dir, DISCOVERY_STATE_FILE), '{"devices": {"a": ');
    const torn = rig(['p0'], settings(), r.dir);
    expect(torn.logged).toContain('discovery-state-unreadable');
    torn.d.onConnect();
    expect(clears(torn.sent)).toEqual([]);
  });
});

describe('issue 14.1: discovery bounds', () => {
  it('issue 14.1: a port cycling device ids (a confused or hostile device) keeps at most 8 devices announced', () => {
    const r = rig(['p0', 'p1']);
    r.d.onConnect();
    r.d.onHello('p1', dev('steady'));
    for (let i = 0; i < 20; i++) r.d.onHello('p0', dev(`id${i}`, ['t']));
    const state = JSON.parse(readFileSync(path.join(r.dir, DISCOVERY_STATE_FILE), 'utf8'));
    expect(Object.keys(state.devices).sort()).toEqual(
      ['steady', ...Array.from({ length: 8 }, (_, i) => `id${12 + i}`)].sort(),
    );
    expect(clears(r.sent)).toEqual(Array.from({ length: 12 }, (_, i) => topic(`id${i}`, 't')).sort());
    // Announcing a device again makes it the newest on its port.
    r.d.onHello('p0', dev('id12', ['t']));
    r.d.onHello('p0', dev('new', ['t']));
    expect(r.d.topicsOf('id12')).toEqual([topic('id12', 't')]);
    expect(r.d.topicsOf('id13')).toEqual([]);
  });
});
