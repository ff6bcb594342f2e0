/**
 * Issue 15.2: `persistent_client_expiration`. MQTT 3.1.1 sessions with clean session false never
 * expired; Mosquitto ends them (and caps every longer session expiry) after this time, counted
 * from the disconnect, across restarts too.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config.ts';
import { describeConfig } from '../src/config-build.ts';
import { RawClient, startBroker, type TestBroker } from './helpers/raw-client.ts';

const brokers: TestBroker[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const b of brokers.splice(0)) await b.close();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

async function broker(options: Parameters<typeof startBroker>[0] = {}): Promise<TestBroker> {
  const b = await startBroker(options);
  brokers.push(b);
  return b;
}

/** Resolves once the broker has no session for `clientId` (the sweep runs every second). */
async function gone(b: TestBroker, clientId: string, withinMs: number): Promise<number> {
  const t0 = Date.now();
  while (b.broker.sessions.has(clientId)) {
    if (Date.now() - t0 > withinMs) throw new Error(`session ${clientId} still there after ${withinMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return Date.now() - t0;
}

async function offlineSession(port: number, clientId: string, version: 4 | 5 = 4): Promise<void> {
  const { client } = await RawClient.connect(port, {
    protocolVersion: version,
    clientId,
    clean: false,
    properties: version === 5 ? { sessionExpiryInterval: 3600 } : undefined,
  });
  await client.subscribe('pce/t', 1);
  await client.disconnect();
}

describe('issue 15.2: persistent_client_expiration', () => {
  it('issue 15.2: parses Mosquitto durations (h d w m y), refuses the rest, shows in check', () => {
    const at = (v: string): number =>
      parseConfig(`listener 1883\npersistent_client_expiration ${v}\n`, '/tmp/x.conf')
        .persistentClientExpiration;
    expect(at('2h')).toBe(7200);
    expect(at('1d')).toBe(86_400);
    expect(at('2w')).toBe(14 * 86_400);
    expect(at('1m')).toBe(30 * 86_400);
    expect(at('1y')).toBe(365 * 86_400);
    expect(parseConfig('listener 1883\n', '/tmp/x.conf').persistentClientExpiration).toBe(0);
    for (const bad of ['10', '0h', '-1d', 'h', '1x', '1.5h'])
      expect(() => parseConfig(`persistent_client_expiration ${bad}\n`, '/tmp/x.conf')).toThrow(ConfigError);
    const cfg = parseConfig('listener 1883\npersistent_client_expiration 1d\n', '/tmp/x.conf');
    expect(cfg.warnings.filter((w) => w.key === 'persistent_client_expiration')).toEqual([]);
    expect(describeConfig(cfg)).toContain('persistent_client_expiration 86400 seconds\n');
  });

  it('issue 15.2: a 3.1.1 clean-session-false session ends that long after its disconnect', async () => {
    const b = await broker({ persistentClientExpiration: 1 });
    await offlineSession(b.port, 'pce-311');
    expect(b.broker.sessions.has('pce-311')).toBe(true);
    const took = await gone(b, 'pce-311', 4000);
    expect(took).toBeGreaterThanOrEqual(500);
    const again = await RawClient.connect(b.port, { clientId: 'pce-311', clean: false });
    expect(again.connack.sessionPresent).toBe(false);
    again.client.close();
  });

  it('issue 15.2: without it a 3.1.1 session stays (Mosquitto: never expires)', async () => {
    const b = await broker();
    await offlineSession(b.port, 'pce-none');
    await new Promise((r) => setTimeout(r, 2200));
    const again = await RawClient.connect(b.port, { clientId: 'pce-none', clean: false });
    expect(again.connack.sessionPresent).toBe(true);
    again.client.close();
  });

  it('issue 15.2: it caps a longer MQTT 5 session expiry interval', async () => {
    const b = await broker({ persistentClientExpiration: 1 });
    await offlineSession(b.port, 'pce-5', 5);
    await gone(b, 'pce-5', 4000);
  });

  it('issue 15.2: a persisted session expires across a restart, counted from its disconnect', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bl-pce-'));
    dirs.push(dir);
    const first = await startBroker({ persistenceDir: dir, persistentClientExpiration: 3600 });
    await offlineSession(first.port, 'pce-kept');
    await offlineSession(first.port, 'pce-old');
    // 'pce-old' disconnected two hours ago, as far as the stored state says
    const old = first.broker.sessions.get('pce-old');
    // the broker sees the close a moment after the client
    for (let i = 0; i < 100 && old?.expiresAt === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(old?.expiresAt).toBeGreaterThan(Date.now());
    (old as { expiresAt: number }).expiresAt = Date.now() - 1000;
    first.broker.persist?.sessionPut(old as never);
    await first.close();
    const second = await broker({ persistenceDir: dir, persistentClientExpiration: 3600 });
    // the one whose time ran out while the broker was down is gone at the first sweep
    await gone(second, 'pce-old', 3000);
    const kept = second.broker.sessions.get('pce-kept');
    expect(kept).toBeDefined();
    // the other keeps its clock: it ends an hour after its disconnect, not after the restart
    expect(kept?.expiresAt).toBeLessThanOrEqual(Date.now() + 3600_000);
    expect(kept?.expiresAt).toBeGreaterThan(Date.now() + 3500_000);
    const c = await RawClient.connect(second.port, { clientId: 'pce-kept', clean: false });
    expect(c.connack.sessionPresent).toBe(true);
    c.client.close();
  });

  it('issue 15.2: a session stored without it gets it at the next start (configured later)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bl-pce-'));
    dirs.push(dir);
    const first = await startBroker({ persistenceDir: dir });
    await offlineSession(first.port, 'pce-later');
    expect(first.broker.sessions.get('pce-later')?.expiresAt).toBe(0);
    await first.close();
    const second = await broker({ persistenceDir: dir, persistentClientExpiration: 1 });
    expect(second.broker.sessions.has('pce-later')).toBe(true);
    await gone(second, 'pce-later', 4000);
  });
});
