/**
 * The agent's `mqtts://` settings end to end: Mosquitto with a TLS listener that requires a
 * client certificate (certificates made by openssl for the test); the agent's config names the
 * CA, certificate and key files. An untrusted CA keeps the agent disconnected, and its readings
 * keep being stored and acknowledged.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Agent, parseConfig, silentLogger } from '@mqtt-edge/agent';
import { createLinkPair, InProcessTransport } from '@mqtt-edge/firmware-sim';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasMosquitto, type Mosquitto, startMosquitto } from './helpers/mosquitto.ts';
import { until, WatchedDevice } from './helpers/processes.ts';

let HAS_OPENSSL = true;
try {
  execFileSync('openssl', ['version'], { stdio: 'ignore' });
} catch {
  HAS_OPENSSL = false;
}
if (!hasMosquitto() || !HAS_OPENSSL) console.warn('e2e-agent-tls: mosquitto or openssl missing, skipped');

describe.skipIf(!hasMosquitto() || !HAS_OPENSSL)('agent over mqtts:// with a client certificate', () => {
  let dir: string;
  let broker: Mosquitto;
  const f = (n: string) => path.join(dir, n);

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'agent-tls-'));
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    for (const ca of ['ca', 'other-ca'])
      ssl(
        'req',
        '-x509',
        ...ec,
        '-keyout',
        `${ca}.key`,
        '-out',
        `${ca}.crt`,
        '-days',
        '1',
        '-subj',
        `/CN=${ca}`,
      );
    writeFileSync(f('server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
    for (const who of ['server', 'client']) {
      ssl('req', ...ec, '-keyout', `${who}.key`, '-out', `${who}.csr`, '-subj', `/CN=${who}`);
      const ext = who === 'server' ? ['-extfile', 'server.ext'] : [];
      ssl(
        'x509',
        '-req',
        '-in',
        `${who}.csr`,
        '-CA',
        'ca.crt',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-out',
        `${who}.crt`,
        '-days',
        '1',
        ...ext,
      );
    }
    broker = await startMosquitto({
      config: [
        `cafile ${f('ca.crt')}`,
        `certfile ${f('server.crt')}`,
        `keyfile ${f('server.key')}`,
        'require_certificate true',
      ].join('\n'),
    });
  });
  afterAll(async () => {
    await broker?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function runAgent(ca: string, name: string) {
    const pair = createLinkPair();
    const device = WatchedDevice.over(new InProcessTransport(pair), {
      deviceId: `tls-${name}`,
      intervalMs: 30,
      seed: 3,
    });
    const config = parseConfig(
      {
        agent: { id: name, stateDir: f(`state-${name}`), healthInterval: 0 },
        serial: [{ path: f(`link-${name}`) }],
        mqtt: {
          url: `mqtts://127.0.0.1:${broker.port}`,
          tls: { ca, cert: 'client.crt', key: 'client.key', servername: 'localhost' },
          reconnectMin: '50ms',
          reconnectMax: '200ms',
        },
        topics: { prefix: 'tls' },
      },
      { baseDir: dir, env: {} },
    );
    const agent = await Agent.start({
      config,
      log: silentLogger,
      statusFile: false,
      openPort: async () => pair.host,
    });
    device.start();
    return { agent, device };
  }

  it('connects with the CA, certificate and key from the config; readings reach the broker', async () => {
    const { agent, device } = await runAgent('ca.crt', 'good');
    try {
      expect(await until(() => agent.isConnected, 10_000)).toBe(true);
      expect(await until(() => device.acks.length >= 20, 10_000)).toBe(true);
      await device.stop();
      // PUBACKs over TLS empty the queue.
      expect(await until(() => agent.queueStats().count === 0, 10_000)).toBe(true);
      expect(agent.queueStats().nextSeq - 1).toBeGreaterThanOrEqual(80);
    } finally {
      await device.stop();
      await agent.stop(500);
    }
  }, 30_000);

  it('an untrusted server certificate: no connection, readings still stored and acknowledged', async () => {
    const { agent, device } = await runAgent('other-ca.crt', 'bad');
    try {
      expect(await until(() => device.acks.length >= 20, 10_000)).toBe(true);
      expect(agent.isConnected).toBe(false);
      expect(agent.queueStats().count).toBeGreaterThanOrEqual(80);
      // The reason (certificate not trusted) is not visible yet: the client reports no error for
      // a connection that fails before its transport opens (asked of the client's owner).
      expect(agent.snapshot().broker.connected).toBe(false);
    } finally {
      await device.stop();
      await agent.stop(200);
    }
  }, 30_000);
});
