/**
 * The two sides of a config group, started from the same mosquitto.conf body: Debian's
 * mosquitto (test/helpers/mosquitto.ts; `user root` and the listener line are the harness's),
 * and broker-lite in this process, built the way its CLI builds it (parseConfig ->
 * buildBrokerOptions -> Broker, startBridges for `connection` sections). A bridge group gives
 * each side a remote broker of its own (a Mosquitto with the group's remote config), so that
 * both bridges are compared against the same kind of peer.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Bridges,
  Broker,
  buildBrokerOptions,
  defaultBridgeDir,
  hashPassword,
  parseConfig,
  startBridges,
} from '@mqtt-edge/broker-lite';
import { type Mosquitto, startMosquitto } from '../helpers/mosquitto.ts';
import { DiffClient } from './client.ts';
import type { Ports } from './run.ts';
import type { ConfigGroup } from './types.ts';

export type SideName = 'mosquitto' | 'broker-lite';

export interface Side {
  name: SideName;
  ports: Ports;
  /** The broker's log (and the remote's), for a failure message. */
  log(): string;
  stop(): Promise<void>;
}

/** The password file's text: each user hashed by broker-lite's passwd code ($7$, read by both). */
export async function passwordFile(passwords: Record<string, string>): Promise<string> {
  const lines: string[] = [];
  for (const [user, password] of Object.entries(passwords))
    lines.push(`${user}:${await hashPassword(password)}`);
  return `${lines.join('\n')}\n`;
}

/** The config body with `{dir}` and `{remote}` filled in. */
export function fill(conf: string, dir: string, remote: number | undefined): string {
  return conf.replaceAll('{dir}', dir).replaceAll('{remote}', String(remote ?? 0));
}

function writeFiles(dir: string, group: ConfigGroup, passwd: string | undefined): void {
  mkdirSync(dir, { recursive: true });
  if (passwd !== undefined) writeFileSync(join(dir, 'passwd'), passwd);
  if (group.acl !== undefined) writeFileSync(join(dir, 'acl'), group.acl);
}

async function startRemote(group: ConfigGroup, dir: string): Promise<Mosquitto | undefined> {
  if (group.remote === undefined) return undefined;
  const rdir = join(dir, 'remote');
  mkdirSync(rdir);
  return startMosquitto({ config: fill(group.remote.conf, rdir, undefined), dir: rdir });
}

const PROBE_MS = 15_000;

async function probeClient(port: number, id: string, filter: string): Promise<DiffClient> {
  const c = await DiffClient.open(port);
  await c.connect({ type: 'connect', protocolVersion: 4, clientId: id, clean: true, keepalive: 60 }, 3000);
  await c.subscribe([{ topicFilter: filter, qos: 0 }]);
  return c;
}

/**
 * Until a QoS 0 probe crossed the bridge each way: one probe per direction every 200 ms at most
 * (a bridge has no other "ready" signal both brokers give), bounded by PROBE_MS.
 */
async function probeBridge(ports: Ports, probe: { out: string; in: string }): Promise<void> {
  const local = await probeClient(ports.local, 'diff-probe-local', probe.in);
  const remote = await probeClient(ports.remote as number, 'diff-probe-remote', probe.out);
  try {
    const until = Date.now() + PROBE_MS;
    const crossed = { out: false, in: false };
    const attempt = async (from: DiffClient, to: DiffClient, topic: string): Promise<boolean> => {
      const seen = to.waitFor((p) => p.type === 'publish' && p.topic === topic, 200);
      await from.publish({ topic, payload: new Uint8Array(0), qos: 0, retain: false }, 0);
      const got = await seen;
      if (got === null) throw new Error('a bridge probe client was closed');
      return got !== 'timeout';
    };
    while (!crossed.out || !crossed.in) {
      if (Date.now() > until) throw new Error(`the bridge did not carry probes both ways in ${PROBE_MS} ms`);
      const [o, i] = await Promise.all([
        crossed.out || attempt(local, remote, probe.out),
        crossed.in || attempt(remote, local, probe.in),
      ]);
      crossed.out = o;
      crossed.in = i;
    }
  } finally {
    local.drop();
    remote.drop();
  }
}

export async function startSide(
  name: SideName,
  group: ConfigGroup,
  passwd: string | undefined,
): Promise<Side> {
  const dir = mkdtempSync(join(tmpdir(), `diff-${name}-`));
  writeFiles(dir, group, passwd);
  const remote = await startRemote(group, dir);
  const conf = fill(group.conf, dir, remote?.port);
  const remoteLog = () => (remote === undefined ? '' : `\n--- remote mosquitto:\n${remote.log()}`);
  const cleanup = async () => {
    await remote?.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  if (name === 'mosquitto') {
    let m: Mosquitto;
    try {
      m = await startMosquitto({ config: conf, dir });
    } catch (err) {
      await cleanup();
      throw err;
    }
    const ports = { local: m.port, remote: remote?.port };
    if (group.bridgeProbe !== undefined) await probeBridge(ports, group.bridgeProbe);
    return {
      name,
      ports,
      log: () => m.log() + remoteLog(),
      async stop() {
        await m.stop();
        await cleanup();
      },
    };
  }
  const file = join(dir, 'mosquitto.conf');
  const text = `listener 0 127.0.0.1\n${conf}\n`;
  writeFileSync(file, text);
  const lines: string[] = [];
  const logger = {
    log: (level: string, message: string, fields?: Record<string, unknown>) => {
      lines.push(`${level} ${message}${fields ? ` ${JSON.stringify(fields)}` : ''}`);
      if (lines.length > 2000) lines.splice(0, 1000);
    },
  };
  const cfg = parseConfig(text, file);
  const { options } = await buildBrokerOptions(cfg, logger);
  // No delay before a refused CONNACK: Mosquitto has none, and the suite compares codes, not times.
  const broker = new Broker({ ...options, authFailureDelayMs: 0 });
  await broker.listen();
  let bridges: Bridges | undefined;
  if (cfg.bridges.length > 0)
    bridges = await startBridges(broker, cfg.bridges, {
      queueDir: (n) => defaultBridgeDir(cfg.persistence ? cfg.persistenceLocation : join(dir, 'state'), n),
      persistent: cfg.persistence,
    });
  const ports = { local: broker.addresses[0].port, remote: remote?.port };
  if (group.bridgeProbe !== undefined) await probeBridge(ports, group.bridgeProbe);
  return {
    name,
    ports,
    log: () => lines.join('\n') + remoteLog(),
    async stop() {
      await bridges?.close();
      await broker.close();
      await cleanup();
    },
  };
}
