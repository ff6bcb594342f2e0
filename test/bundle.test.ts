/**
 * Issue 13.3: the single-file bundles (`npm run bundle`, scripts/bundle.ts), copied as an
 * operator would scp them (the two .mjs files and prebuilds/, nothing else) into a directory
 * with no node_modules anywhere above it, run with plain node: --version, --help, a broker and
 * a client exchange, `check`, and the whole gateway (a simulated device on a pty -> the agent
 * bundle, which loads serialport's native binding from prebuilds/ -> the broker bundle).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { connect, type MqttClient } from '@mqtt-edge/client';
import { FirmwareSim, hasSocat, PtyTransport } from '@mqtt-edge/firmware-sim';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBundles } from '../scripts/bundle.ts';
import { freePort } from './helpers/mosquitto.ts';
import { userEnv } from './helpers/packed-install.ts';

const run = promisify(execFile);
let base: string;
let pi: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  base = mkdtempSync(path.join(os.tmpdir(), 'mqtt-edge-bundle-'));
  const r = await buildBundles(path.join(base, 'dist'));
  pi = path.join(base, 'pi');
  for (const f of [r.broker, r.agent, r.prebuilds])
    cpSync(f, path.join(pi, path.basename(f)), { recursive: true });
}, 60_000);

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  if (base) rmSync(base, { recursive: true, force: true });
});

function bundle(name: string, args: string[]) {
  return run(path.join(pi, name), args, { cwd: pi, env: userEnv(), timeout: 20_000 });
}

/** The broker's `ready` JSON line: its port. */
function startBroker(conf: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(path.join(pi, 'broker-lite.mjs'), ['-c', conf, '--log-format', 'json'], {
    cwd: pi,
    env: userEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`broker bundle: no ready line:\n${out}`)), 15_000);
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      const m = /"msg":"ready".*"ports":"(\d+)"/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve({ child, port: Number(m[1]) });
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (s: string) => {
      out += s;
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`broker bundle exited (${code}):\n${out}`));
    });
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

function nextMessage(client: MqttClient, filter: (topic: string) => boolean): Promise<[string, string]> {
  return new Promise((resolve) => {
    const on = (topic: string, payload: Uint8Array): void => {
      if (!filter(topic)) return;
      client.off('message', on);
      resolve([topic, new TextDecoder().decode(payload)]);
    };
    client.on('message', on);
  });
}

describe.skipIf(process.platform !== 'linux')('issue 13.3: single-file bundles', () => {
  it('are two files and the native serial binding beside them, nothing to install', () => {
    expect(readdirSync(pi).sort()).toEqual(['broker-lite.mjs', 'mqtt-edge-agent.mjs', 'prebuilds']);
    // A Raspberry Pi: 32-bit (armv6 Pi Zero/1, armv7) and 64-bit OS; x64 for a PC gateway.
    const prebuilds = readdirSync(path.join(pi, 'prebuilds'));
    for (const d of ['linux-arm', 'linux-arm64', 'linux-x64']) expect(prebuilds).toContain(d);
    for (let d = pi; d !== path.dirname(d); d = path.dirname(d)) {
      expect(existsSync(path.join(d, 'node_modules')), d).toBe(false);
    }
  });

  it('broker-lite.mjs --version and --help', async () => {
    expect((await bundle('broker-lite.mjs', ['--version'])).stdout).toBe('broker-lite 0.1.0\n');
    expect((await bundle('broker-lite.mjs', ['--help'])).stdout).toMatch(
      /^broker-lite 0\.1\.0: .*\n\nUsage:/,
    );
  });

  it('broker-lite.mjs runs a broker a client exchanges a message through', async () => {
    const conf = path.join(base, 'broker.conf');
    writeFileSync(conf, 'listener 0 127.0.0.1\nallow_anonymous true\nlog_dest stdout\nsys_interval 0\n');
    const { child, port } = await startBroker(conf);
    const c = connect(`mqtt://127.0.0.1:${port}`, { clientId: 'bundle-test', protocolVersion: 5 });
    try {
      const got = nextMessage(c, (t) => t === 'bundle/test');
      await c.subscribe({ filter: 'bundle/#', qos: 1 });
      await c.publish('bundle/test', 'through the bundle', { qos: 1 });
      expect(await got).toEqual(['bundle/test', 'through the bundle']);
    } finally {
      await c.end();
    }
    child.kill('SIGTERM');
    expect(await exited(child)).toBe(0);
  });

  it('issue 14: broker-lite.mjs serves its status page (embedded: no esbuild, no files beside it) and /metrics', async () => {
    const metricsPort = await freePort();
    const conf = path.join(base, 'broker-page.conf');
    writeFileSync(
      conf,
      `listener 0 127.0.0.1\nprotocol websockets\nstatus_page true\nallow_anonymous true\nlog_dest stdout\nsys_interval 0\nmetrics_listener ${metricsPort} 127.0.0.1\n`,
    );
    const { child, port } = await startBroker(conf);
    try {
      const page = await fetch(`http://127.0.0.1:${port}/app.js`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('$SYS/broker/#');
      const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      expect(await metrics.text()).toMatch(/^# HELP mqtt_edge_broker_info /);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited(child)).toBe(0);
  });

  it('mqtt-edge-agent.mjs --help and check -c', async () => {
    expect((await bundle('mqtt-edge-agent.mjs', ['--help'])).stdout).toMatch(/^mqtt-edge-agent: /);
    const conf = path.join(base, 'check.yaml');
    writeFileSync(
      conf,
      'agent:\n  id: gw\nserial:\n  - path: /dev/ttyUSB0\nmqtt:\n  url: mqtt://127.0.0.1:1883\n',
    );
    expect((await bundle('mqtt-edge-agent.mjs', ['check', '-c', conf])).stdout).toMatch(
      /: ok\nagent:\n {2}id: gw\n/,
    );
  });

  it.skipIf(!hasSocat())(
    'the gateway from bundles: a device on a pty -> mqtt-edge-agent.mjs -> broker-lite.mjs',
    async () => {
      const conf = path.join(base, 'gw.conf');
      writeFileSync(conf, 'listener 0 127.0.0.1\nallow_anonymous true\nlog_dest stdout\nsys_interval 0\n');
      const { child: broker, port } = await startBroker(conf);
      const tty = path.join(base, 'tty-kitchen');
      const device = new FirmwareSim(await PtyTransport.create(tty), {
        deviceId: 'kitchen',
        intervalMs: 200,
      });
      const sub = connect(`mqtt://127.0.0.1:${port}`, { clientId: 'bundle-sub', protocolVersion: 5 });
      let agent: ChildProcess | undefined;
      try {
        const reading = nextMessage(sub, (t) => t.startsWith('bundle/kitchen/') && !t.endsWith('/status'));
        await sub.subscribe({ filter: 'bundle/#', qos: 1 });
        const yaml = path.join(base, 'agent.yaml');
        writeFileSync(
          yaml,
          `agent:\n  id: gw\n  stateDir: ${path.join(base, 'state')}\nserial:\n  - path: ${tty}\n` +
            `mqtt:\n  url: mqtt://127.0.0.1:${port}\ntopics:\n  prefix: bundle\n`,
        );
        // Through a symlink on PATH, as the README installs it: prebuilds/ is found beside the
        // real file.
        const bin = path.join(base, 'bin');
        mkdirSync(bin);
        symlinkSync(path.join(pi, 'mqtt-edge-agent.mjs'), path.join(bin, 'mqtt-edge-agent'));
        agent = spawn('mqtt-edge-agent', ['-c', yaml], {
          cwd: base,
          env: userEnv({ PATH: `${bin}:${process.env.PATH}` }),
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        children.push(agent);
        let agentErr = '';
        agent.stderr!.setEncoding('utf8').on('data', (s: string) => {
          agentErr += s;
        });
        device.start();
        const timeout = new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error(`no reading in 15 s; agent:\n${agentErr}`)), 15_000).unref(),
        );
        const [topic, payload] = await Promise.race([reading, timeout]);
        expect(topic).toMatch(/^bundle\/kitchen\/\w+$/);
        expect(JSON.parse(payload)).toMatchObject({ device: 'kitchen' });
        expect(agentErr).toContain('"msg":"port-open"');
        agent.kill('SIGTERM');
        expect(await exited(agent)).toBe(0);
      } finally {
        await device.stop();
        await device.transport.close();
        await sub.end();
        if (agent && agent.exitCode === null) agent.kill('SIGKILL');
        broker.kill('SIGTERM');
        await exited(broker);
      }
    },
    40_000,
  );
});
