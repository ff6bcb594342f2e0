/**
 * Issue 16.5: the sample configurations in docs/scaling-out.md are what they claim: nats-server
 * accepts the cluster node's file (`nats-server -t`), broker-lite the gateway's, with the bridge
 * settings the page describes.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '@mqtt-edge/broker-lite';
import { describe, expect, it } from 'vitest';
import { hasNats, NATS_BIN } from './helpers/nats.ts';

if (!hasNats())
  console.warn(
    'scaling-out-doc: /usr/sbin/nats-server missing (Debian package nats-server), NATS sample not checked',
  );

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const page = readFileSync(path.join(ROOT, 'docs/scaling-out.md'), 'utf8');

/** The fenced block that starts with the comment line naming `file`. */
function sample(file: string): string {
  const block = [...page.matchAll(/```\n([\s\S]*?)```/g)]
    .map((m) => m[1])
    .find((b) => b.startsWith(`# ${file}`));
  if (block === undefined) throw new Error(`docs/scaling-out.md has no sample for ${file}`);
  return block;
}

describe('issue 16.5: docs/scaling-out.md samples', () => {
  it.skipIf(!hasNats())(
    'issue 16.5: the NATS node config is valid for nats-server, with the MQTT settings the page explains',
    () => {
      const conf = sample('/etc/nats/nats-server.conf');
      expect(conf).toMatch(/stream_replicas: 3/);
      const dir = mkdtempSync(path.join(os.tmpdir(), 'scaling-doc-'));
      try {
        const file = path.join(dir, 'nats.conf');
        writeFileSync(file, conf);
        const r = spawnSync(NATS_BIN, ['-t', '-c', file], { encoding: 'utf8' });
        expect(`${r.stdout}${r.stderr}`).toContain('is valid');
        expect(r.status).toBe(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  it('issue 16.5: the gateway config is accepted by broker-lite, one bridge over the three nodes as described', () => {
    const cfg = parseConfig(sample('/etc/mosquitto/mosquitto.conf'), '/etc/mosquitto/mosquitto.conf');
    expect(cfg.bridges).toHaveLength(1);
    const b = cfg.bridges[0];
    expect(b.addresses.map((a) => `${a.host}:${a.port}`)).toEqual([
      '10.0.0.11:1883',
      '10.0.0.12:1883',
      '10.0.0.13:1883',
    ]);
    expect(b).toMatchObject({
      protocolVersion: 4,
      cleanSession: false,
      roundRobin: false,
      tryPrivate: true,
      notificationsLocalOnly: true,
      remoteClientId: 'site1-gw1',
      queueMaxBytes: 268_435_456,
    });
    expect(b.topics).toMatchObject([
      { pattern: 'sensors/#', direction: 'out', qos: 1, remotePrefix: 'site1/gw1/' },
    ]);
  });
});
