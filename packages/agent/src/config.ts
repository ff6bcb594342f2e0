/**
 * The agent's configuration: YAML or JSON in, a fully resolved `AgentConfig` out, or a
 * ConfigError listing every problem with its key path (`serial[1].baud`) and, when the text is
 * at hand, its line. Hand-written checks: the rules are few, and a typo'd key must be reported
 * as such (`serial[0].baudrate: unknown key; did you mean baud?`), which schema libraries do
 * poorly.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { topicNameProblem } from '@mqtt-edge/codec';
import { isName } from '@mqtt-edge/serial-protocol';
import type { Document, LineCounter } from 'yaml';
import { expandEnv } from './config-env.ts';
import { type ConfigProblem, fmtMs, kind, parseDuration, Reader, show } from './config-reader.ts';
import { LOG_LEVELS, type LogLevel } from './log.ts';
import { MODBUS_PORT_KEYS, type ModbusPortConfig, modbusDocument, readModbusPort } from './modbus-config.ts';

export { type ConfigProblem, parseDuration, parseSize } from './config-reader.ts';

export type Framing = 'native' | 'json-lines' | 'key-value';
export type PayloadFormat = 'json' | 'cbor' | 'raw';
export type FsyncSetting = 'batch' | 'never' | { intervalMs: number };

export interface UsbMatch {
  /** Hex, as `lsusb` and SerialPort.list() print it (`2341`). */
  vendorId?: string;
  productId?: string;
  serialNumber?: string;
}

const PORT_KEYS = [
  'name',
  'path',
  'usb',
  'baud',
  'framing',
  'device',
  'expectedInterval',
  'writeTimeout',
  'protocol',
  'dataBits',
  'parity',
  'stopBits',
] as const;

export interface SerialPortConfig {
  /** Label in logs and status. */
  name: string;
  /** A device path (`/dev/ttyUSB0`, `/dev/serial/by-id/...`); or `usb` to find one. */
  path?: string;
  usb?: UsbMatch;
  baud: number;
  framing: Framing;
  /** Device id for text framings (they carry none); for native, the id expected in HELLO. */
  device?: string;
  /**
   * How often the device reports, ms, when its HELLO does not say (`p`): a port silent for
   * longer is asked for HELLO, then reopened (issue 19). 0: never. Absent: native ports use
   * `agent.expectedInterval`, text ports are not watched.
   */
  expectedIntervalMs?: number;
  /** A write that finds no room in the tty for this long fails and the port is reopened (issue 19). */
  writeTimeoutMs: number;
  /** Character format; absent: 8, none, 1 (issue 20: always set on Modbus ports, parity even by default). */
  dataBits?: 5 | 6 | 7 | 8;
  parity?: 'none' | 'even' | 'odd';
  stopBits?: 1 | 2;
  /** `protocol: modbus-rtu` (issue 20): the agent polls the devices listed here. */
  modbus?: ModbusPortConfig;
}

export interface TlsFiles {
  ca?: string;
  cert?: string;
  key?: string;
  rejectUnauthorized: boolean;
  servername?: string;
}

export interface MqttConfig {
  url: string;
  clientId: string;
  username?: string;
  password?: string;
  tls?: TlsFiles;
  version: 4 | 5;
  keepalive: number;
  qos: 0 | 1 | 2;
  maxInflight: number;
  /**
   * MQTT 5: keep the broker session across reconnects of one agent process (clean start on
   * its first connection, then false). With QoS 2 a reconnect then resends exactly once;
   * readings survive in the agent's queue either way.
   */
  persistentSession: boolean;
  /** 5.0 session expiry with a persistent session, seconds. */
  sessionExpiryS: number;
  /** Milliseconds between reconnect attempts: first delay and cap (exponential, with jitter). */
  reconnectMinMs: number;
  reconnectMaxMs: number;
}

export interface TopicsConfig {
  prefix: string;
  /** Template for readings: `{prefix}`, `{device}`, `{sensor}`. */
  reading: string;
  payload: PayloadFormat;
}

export interface QueueConfig {
  dir: string;
  fsync: FsyncSetting;
  /** Bound on queued topic + payload bytes; DEFAULT_QUEUE_MAX_BYTES unless configured. */
  maxBytes: number;
  maxCount?: number;
  maxAgeMs?: number;
  dropPolicy: 'reject-new' | 'drop-oldest';
  segmentBytes?: number;
}

/**
 * The queue's default bound (issue 12.12): an unbounded queue fills the gateway's disk during a
 * long broker outage, and the system (logs, other services) with it. 256 MiB of readings is
 * about 1.5 million JSON readings, days of a busy gateway, well inside any SD card. The default
 * drop policy stays `reject-new`: a full queue refuses new readings and does not ACK them, so the
 * devices keep them in their rings and the agent never breaks a promise it made (the product's
 * one guarantee). `drop-oldest` (keep the newest, count and log what goes) is the operator's
 * choice to make.
 */
export const DEFAULT_QUEUE_MAX_BYTES = 256 * 2 ** 20;

/** Home Assistant MQTT discovery (issue 14). Keys in the file: enabled, discovery_prefix, node_id. */
export interface HomeAssistantConfig {
  enabled: boolean;
  /** Home Assistant's discovery prefix (its default `homeassistant`); birth messages come on `{prefix}/status`. */
  discoveryPrefix: string;
  /** The `<node_id>` level of the discovery topics: `[A-Za-z0-9_-]`, default the agent id with other characters as `_`. */
  nodeId: string;
}

/** The Prometheus endpoint (issue 14); absent: off. */
export interface MetricsConfig {
  /** As written: `127.0.0.1:9101`, `[::1]:9101`. */
  listen: string;
  host: string;
  /** 0: any free port (the log says which). */
  port: number;
}

export interface AgentConfig {
  id: string;
  stateDir: string;
  log: { level: LogLevel; format: 'auto' | 'json' | 'text' };
  /** How often the status file is rewritten. */
  statusIntervalMs: number;
  /** How often counters go to the health topic (0: never). */
  healthIntervalMs: number;
  /** How long a downlink command waits for the device's RESULT. */
  commandTimeoutMs: number;
  /**
   * The interval native devices are expected to report at when neither their HELLO (`p`) nor
   * their port says (issue 19); 0: such ports are not watched for silence.
   */
  expectedIntervalMs: number;
  serial: SerialPortConfig[];
  mqtt: MqttConfig;
  topics: TopicsConfig;
  queue: QueueConfig;
  homeassistant: HomeAssistantConfig;
  metrics?: MetricsConfig;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly problems: ConfigProblem[],
    readonly source = 'config',
  ) {
    super(
      `${source}: ${problems.length} problem${problems.length === 1 ? '' : 's'}\n${problems
        .map((p) => `  ${problemLine(p)}`)
        .join('\n')}`,
    );
  }

  /** One line per problem, as `check` prints them (and a refused reload logs them). */
  get lines(): string[] {
    return this.problems.map(problemLine);
  }
}

function problemLine(p: ConfigProblem): string {
  return `${p.path || '(document)'}${p.line ? ` (line ${p.line})` : ''}: ${p.message}`;
}

export const DEFAULT_PASSWORD_ENV = 'MQTT_EDGE_PASSWORD';
export const DEFAULT_USERNAME_ENV = 'MQTT_EDGE_USERNAME';
const BAUDS = [
  300, 600, 1200, 2400, 4800, 9600, 14400, 19200, 28800, 38400, 57600, 76800, 115200, 230400, 250000, 460800,
  500000, 921600, 1000000, 1500000, 2000000, 3000000,
];

/** Replaces `{prefix}`, `{device}`, `{sensor}`; anything else in braces is an error at load time. */
export function templateProblem(template: string): string | undefined {
  const names = [...template.matchAll(/\{([^}]*)\}/g)].map((m) => m[1]);
  for (const n of names) {
    if (n !== 'prefix' && n !== 'device' && n !== 'sensor')
      return `unknown placeholder {${n}}: use {prefix}, {device}, {sensor}`;
  }
  if (!names.includes('device') || !names.includes('sensor'))
    return 'must contain {device} and {sensor} (or readings of different devices or sensors share a topic)';
  const sample = template.replaceAll('{prefix}', 'p').replaceAll('{device}', 'd').replaceAll('{sensor}', 's');
  if (/[+#]/.test(sample)) return 'must not contain the wildcards + or #';
  const p = topicNameProblem(sample);
  return p === null ? undefined : p;
}

function defaultStateDir(env: NodeJS.ProcessEnv, id: string): string {
  // systemd's StateDirectory= sets STATE_DIRECTORY; otherwise the XDG state home.
  if (env.STATE_DIRECTORY) return env.STATE_DIRECTORY.split(':')[0];
  const base = env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state');
  return path.join(base, 'mqtt-edge-agent', id);
}

function defaultId(): string {
  const h = os
    .hostname()
    .replace(/[^A-Za-z0-9_.:-]/g, '-')
    .slice(0, 48);
  return isName(h) ? h : 'agent';
}

export interface ParseOptions {
  /** Relative paths resolve against it (the config file's directory). */
  baseDir?: string;
  env?: NodeJS.ProcessEnv;
  /** For messages: the file name. */
  source?: string;
}

/** Validates a parsed document. Throws ConfigError with every problem found. */
export function parseConfig(raw: unknown, options: ParseOptions = {}): AgentConfig {
  const env = options.env ?? process.env;
  const envProblems: ConfigProblem[] = [];
  raw = expandEnv(raw, env, envProblems);
  // Only these: a value left unexpanded would only bring follow-on problems.
  if (envProblems.length > 0) throw new ConfigError(envProblems, options.source);
  const r = new Reader(options.baseDir ?? process.cwd());
  const root =
    r.object('', raw, ['agent', 'serial', 'mqtt', 'topics', 'queue', 'homeassistant', 'metrics']) ?? {};
  if (raw === undefined || raw === null) r.problem('', 'the file is empty');

  // agent
  const a =
    r.object('agent', root.agent, [
      'id',
      'stateDir',
      'log',
      'statusInterval',
      'healthInterval',
      'commandTimeout',
      'expectedInterval',
    ]) ?? {};
  let id = r.string('agent.id', a.id) ?? defaultId();
  if (!isName(id)) {
    r.problem('agent.id', `must be 1..64 of A-Z a-z 0-9 _ . : - (it is a topic level); got ${show(id)}`);
    id = 'agent';
  }
  const stateDir = r.filePath('agent.stateDir', a.stateDir) ?? defaultStateDir(env, id);
  const lg = r.object('agent.log', a.log, ['level', 'format']) ?? {};
  const log = {
    level: r.oneOf('agent.log.level', lg.level, LOG_LEVELS, 'info'),
    format: r.oneOf('agent.log.format', lg.format, ['auto', 'json', 'text'] as const, 'auto'),
  };
  const statusIntervalMs = r.duration('agent.statusInterval', a.statusInterval, 100, 3_600_000, 2000);
  const healthIntervalMs = r.duration('agent.healthInterval', a.healthInterval, 0, 86_400_000, 30_000);
  if (healthIntervalMs > 0 && healthIntervalMs < 1000)
    r.problem('agent.healthInterval', 'must be 0 (off) or at least 1s');
  const commandTimeoutMs = r.duration('agent.commandTimeout', a.commandTimeout, 100, 600_000, 5000);
  const expectedIntervalMs = r.interval('agent.expectedInterval', a.expectedInterval) ?? 60_000;

  // serial
  const serial: SerialPortConfig[] = [];
  if (root.serial === undefined || root.serial === null)
    r.problem('serial', 'missing: list at least one port');
  else if (!Array.isArray(root.serial))
    r.problem('serial', `must be a list of ports, got ${kind(root.serial)}`);
  else if (root.serial.length === 0) r.problem('serial', 'must list at least one port');
  else if (root.serial.length > 256) r.problem('serial', 'at most 256 ports');
  else {
    const names = new Set<string>();
    const paths = new Set<string>();
    root.serial.forEach((item, i) => {
      const p = `serial[${i}]`;
      const s = r.object(p, item, [...PORT_KEYS, ...MODBUS_PORT_KEYS], false);
      if (s === undefined) return;
      const portPath = r.string(`${p}.path`, s.path);
      let usb: UsbMatch | undefined;
      if (s.usb !== undefined) {
        const u = r.object(`${p}.usb`, s.usb, ['vendorId', 'productId', 'serialNumber']);
        if (u !== undefined) {
          usb = {};
          for (const k of ['vendorId', 'productId'] as const) {
            const v = typeof u[k] === 'number' ? String(u[k]) : u[k];
            const h = r.string(`${p}.usb.${k}`, v);
            if (h !== undefined && !/^(0x)?[0-9a-fA-F]{1,4}$/.test(h))
              r.problem(`${p}.usb.${k}`, `must be a 4-digit hex id such as 2341; got ${show(h)}`);
            else if (h !== undefined) usb[k] = h.replace(/^0x/, '').toLowerCase().padStart(4, '0');
          }
          const sn = r.string(
            `${p}.usb.serialNumber`,
            typeof u.serialNumber === 'number' ? String(u.serialNumber) : u.serialNumber,
          );
          if (sn !== undefined) usb.serialNumber = sn;
          if (Object.keys(usb).length === 0)
            r.problem(`${p}.usb`, 'give at least one of vendorId, productId, serialNumber');
        }
      }
      if ((portPath === undefined) === (usb === undefined)) r.problem(p, 'give exactly one of path or usb');
      const protocol = r.oneOf(
        `${p}.protocol`,
        s.protocol,
        ['mqtt-edge', 'modbus-rtu'] as const,
        'mqtt-edge',
      );
      const modbus = protocol === 'modbus-rtu';
      if (modbus) {
        for (const k of ['framing', 'device', 'expectedInterval'] as const)
          if (s[k] !== undefined)
            r.problem(
              `${p}.${k}`,
              k === 'device'
                ? 'a modbus-rtu port lists devices (unit, registers)'
                : 'not for a modbus-rtu port',
            );
      } else {
        for (const k of MODBUS_PORT_KEYS)
          if (s[k] !== undefined) r.problem(`${p}.${k}`, 'only with protocol: modbus-rtu');
      }
      // Modbus lines are mostly 9600 baud; the spec makes even parity the default (section 2.5.1).
      const baud = r.int(`${p}.baud`, s.baud, 50, 4_000_000, modbus ? 9600 : 115200);
      if (s.baud !== undefined && Number.isInteger(s.baud) && !BAUDS.includes(baud))
        r.problem(`${p}.baud`, `${baud} is not a standard rate (${BAUDS.join(', ')})`);
      const framing = r.oneOf(
        `${p}.framing`,
        s.framing,
        ['native', 'json-lines', 'key-value'] as const,
        'native',
      );
      const device = r.string(`${p}.device`, s.device);
      if (device !== undefined && !isName(device))
        r.problem(`${p}.device`, `must be 1..64 of A-Z a-z 0-9 _ . : - ; got ${show(device)}`);
      if (framing !== 'native' && device === undefined && !modbus)
        r.problem(`${p}.device`, `required with framing ${framing} (text lines carry no device id)`);
      const name =
        r.string(`${p}.name`, s.name) ??
        device ??
        (portPath !== undefined
          ? path.basename(portPath)
          : `usb-${usb?.vendorId ?? ''}-${usb?.serialNumber ?? i}`);
      if (names.has(name)) r.problem(`${p}.name`, `${show(name)} names two ports; set distinct names`);
      names.add(name);
      if (portPath !== undefined) {
        const abs = path.resolve(r.baseDir, portPath);
        if (paths.has(abs)) r.problem(`${p}.path`, `${portPath} is listed twice`);
        paths.add(abs);
      }
      const writeTimeoutMs = r.duration(`${p}.writeTimeout`, s.writeTimeout, 100, 600_000, 5000);
      const port: SerialPortConfig = { name, baud, framing, writeTimeoutMs };
      if (portPath !== undefined) port.path = path.resolve(r.baseDir, portPath);
      if (usb !== undefined) port.usb = usb;
      if (device !== undefined) port.device = device;
      const expected = r.interval(`${p}.expectedInterval`, s.expectedInterval);
      if (expected !== undefined && !modbus) port.expectedIntervalMs = expected;
      const dataBits = r.int(`${p}.dataBits`, s.dataBits, 5, 8);
      const parity = r.oneOf(
        `${p}.parity`,
        s.parity,
        ['none', 'even', 'odd'] as const,
        modbus ? 'even' : 'none',
      );
      const stopBits = r.int(`${p}.stopBits`, s.stopBits, 1, 2);
      // Written out only when set (or on Modbus ports, where they set the timing).
      if (modbus || dataBits !== undefined) port.dataBits = (dataBits ?? 8) as 5 | 6 | 7 | 8;
      if (modbus || s.parity !== undefined) port.parity = parity;
      if (modbus || stopBits !== undefined) port.stopBits = (stopBits ?? 1) as 1 | 2;
      if (modbus) port.modbus = readModbusPort(r, p, s, name);
      serial.push(port);
    });
  }

  // mqtt
  const m =
    r.object(
      'mqtt',
      root.mqtt,
      [
        'url',
        'clientId',
        'username',
        'password',
        'passwordFile',
        'passwordEnv',
        'tls',
        'version',
        'keepalive',
        'qos',
        'maxInflight',
        'reconnectMin',
        'reconnectMax',
        'persistentSession',
        'sessionExpiry',
      ],
      false,
    ) ?? {};
  const url = r.string('mqtt.url', m.url, { required: true }) ?? 'mqtt://localhost';
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    r.problem('mqtt.url', `not a URL: ${show(url)} (e.g. mqtt://broker.local:1883 or mqtts://host:8883)`);
  }
  if (parsed !== undefined) {
    if (parsed.protocol !== 'mqtt:' && parsed.protocol !== 'mqtts:')
      r.problem('mqtt.url', `scheme must be mqtt:// or mqtts://; got ${parsed.protocol}//`);
    if (parsed.hostname === '') r.problem('mqtt.url', 'has no host');
    if (parsed.username !== '' || parsed.password !== '')
      r.problem(
        'mqtt.url',
        'put credentials in mqtt.username / mqtt.password (or the environment), not the URL',
      );
  }
  const version = r.int('mqtt.version', m.version, 4, 5, 5) as 4 | 5;
  const clientId = r.string('mqtt.clientId', m.clientId) ?? `mqtt-edge-agent-${id}`;
  if (clientId.length > 128) r.problem('mqtt.clientId', 'at most 128 characters');
  let username = r.string('mqtt.username', m.username) ?? (env[DEFAULT_USERNAME_ENV] || undefined);
  const passwordEnv = r.string('mqtt.passwordEnv', m.passwordEnv) ?? DEFAULT_PASSWORD_ENV;
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(passwordEnv))
    r.problem('mqtt.passwordEnv', 'must be an environment variable name');
  let password = r.string('mqtt.password', m.password, { nonEmpty: false });
  const passwordFile = r.filePath('mqtt.passwordFile', m.passwordFile);
  if (password !== undefined && passwordFile !== undefined)
    r.problem('mqtt.passwordFile', 'give mqtt.password or mqtt.passwordFile, not both');
  if (passwordFile !== undefined) {
    try {
      password = readFileSync(passwordFile, 'utf8').replace(/\r?\n$/, '');
    } catch (e) {
      r.problem(
        'mqtt.passwordFile',
        `cannot read ${passwordFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
  }
  const fromEnv = env[passwordEnv];
  if (fromEnv !== undefined && fromEnv !== '') password = fromEnv;
  if (password !== undefined && username === undefined) {
    if (version === 5) username = undefined;
    else r.problem('mqtt.password', 'MQTT 3.1.1 needs mqtt.username with a password');
  }
  let tls: TlsFiles | undefined;
  if (m.tls !== undefined) {
    const t = r.object('mqtt.tls', m.tls, ['ca', 'cert', 'key', 'rejectUnauthorized', 'servername']);
    if (t !== undefined) {
      tls = { rejectUnauthorized: r.bool('mqtt.tls.rejectUnauthorized', t.rejectUnauthorized, true) };
      for (const k of ['ca', 'cert', 'key'] as const) {
        const f = r.filePath(`mqtt.tls.${k}`, t[k]);
        if (f === undefined) continue;
        try {
          readFileSync(f);
          tls[k] = f;
        } catch (e) {
          r.problem(
            `mqtt.tls.${k}`,
            `cannot read ${f}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
          );
        }
      }
      const sn = r.string('mqtt.tls.servername', t.servername);
      if (sn !== undefined) tls.servername = sn;
      if (
        (tls.cert === undefined) !== (tls.key === undefined) &&
        t.cert !== undefined &&
        t.key !== undefined
      ) {
        // both given, one unreadable: already reported
      } else if ((t.cert === undefined) !== (t.key === undefined))
        r.problem('mqtt.tls', 'cert and key go together (client certificate authentication)');
      if (parsed !== undefined && parsed.protocol !== 'mqtts:')
        r.problem('mqtt.tls', 'TLS settings need an mqtts:// url');
    }
  }
  const mqtt: MqttConfig = {
    url,
    clientId,
    version,
    keepalive: r.int('mqtt.keepalive', m.keepalive, 0, 65535, 30),
    qos: r.int('mqtt.qos', m.qos, 0, 2, 1) as 0 | 1 | 2,
    maxInflight: r.int('mqtt.maxInflight', m.maxInflight, 1, 65535, 1000),
    persistentSession: r.bool('mqtt.persistentSession', m.persistentSession, false),
    sessionExpiryS: Math.round(
      r.duration('mqtt.sessionExpiry', m.sessionExpiry, 0, 0xffff_ffff * 1000, 86_400_000) / 1000,
    ),
    reconnectMinMs: r.duration('mqtt.reconnectMin', m.reconnectMin, 10, 600_000, 250),
    reconnectMaxMs: r.duration('mqtt.reconnectMax', m.reconnectMax, 10, 3_600_000, 15_000),
  };
  if (mqtt.reconnectMaxMs < mqtt.reconnectMinMs)
    r.problem('mqtt.reconnectMax', 'must be >= mqtt.reconnectMin');
  if (username !== undefined) mqtt.username = username;
  if (password !== undefined) mqtt.password = password;
  if (tls !== undefined) mqtt.tls = tls;

  // topics
  const t = r.object('topics', root.topics, ['prefix', 'reading', 'payload']) ?? {};
  const prefix = r.string('topics.prefix', t.prefix) ?? 'sensors';
  const pp = topicNameProblem(prefix);
  if (pp !== null) r.problem('topics.prefix', pp);
  else if (/[+#]/.test(prefix)) r.problem('topics.prefix', 'must not contain the wildcards + or #');
  else if (prefix.endsWith('/')) r.problem('topics.prefix', 'must not end with /');
  const reading = r.string('topics.reading', t.reading) ?? '{prefix}/{device}/{sensor}';
  const tp = templateProblem(reading);
  if (tp !== undefined) r.problem('topics.reading', tp);
  const topics: TopicsConfig = {
    prefix,
    reading,
    payload: r.oneOf('topics.payload', t.payload, ['json', 'cbor', 'raw'] as const, 'json'),
  };

  // queue
  const q =
    r.object('queue', root.queue, [
      'dir',
      'fsync',
      'maxBytes',
      'maxCount',
      'maxAge',
      'dropPolicy',
      'segmentBytes',
    ]) ?? {};
  let fsync: FsyncSetting = 'batch';
  if (q.fsync !== undefined && q.fsync !== null) {
    if (q.fsync === 'batch' || q.fsync === 'never') fsync = q.fsync;
    else {
      const ms = parseDuration(q.fsync);
      if (typeof q.fsync !== 'string' || ms === undefined || ms < 1 || ms > 3_600_000)
        r.problem('queue.fsync', `must be batch, never, or an interval such as 100ms; got ${show(q.fsync)}`);
      else fsync = { intervalMs: ms };
    }
  }
  const queue: QueueConfig = {
    dir: r.filePath('queue.dir', q.dir) ?? path.join(stateDir, 'queue'),
    fsync,
    maxBytes: r.size('queue.maxBytes', q.maxBytes, 1024, Number.MAX_SAFE_INTEGER) ?? DEFAULT_QUEUE_MAX_BYTES,
    dropPolicy: r.oneOf(
      'queue.dropPolicy',
      q.dropPolicy,
      ['reject-new', 'drop-oldest'] as const,
      'reject-new',
    ),
  };
  const maxCount = r.int('queue.maxCount', q.maxCount, 1, Number.MAX_SAFE_INTEGER);
  if (maxCount !== undefined) queue.maxCount = maxCount;
  const maxAgeMs = r.duration('queue.maxAge', q.maxAge, 1000, 10 * 365 * 86_400_000);
  if (maxAgeMs !== undefined) queue.maxAgeMs = maxAgeMs;
  const segmentBytes = r.size('queue.segmentBytes', q.segmentBytes, 64 << 10, 1 << 30);
  if (segmentBytes !== undefined) queue.segmentBytes = segmentBytes;

  // homeassistant (the keys are Home Assistant's own names)
  const h = r.object('homeassistant', root.homeassistant, ['enabled', 'discovery_prefix', 'node_id']) ?? {};
  const discoveryPrefix = r.string('homeassistant.discovery_prefix', h.discovery_prefix) ?? 'homeassistant';
  const dp = topicNameProblem(discoveryPrefix);
  if (dp !== null) r.problem('homeassistant.discovery_prefix', dp);
  else if (/[+#]/.test(discoveryPrefix) || discoveryPrefix.endsWith('/'))
    r.problem('homeassistant.discovery_prefix', 'must not contain + or # nor end with /');
  let nodeId = r.string('homeassistant.node_id', h.node_id) ?? defaultNodeId(id);
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(nodeId)) {
    r.problem(
      'homeassistant.node_id',
      `must be 1..64 of A-Z a-z 0-9 _ - (Home Assistant's rule for a discovery topic level); got ${show(nodeId)}`,
    );
    nodeId = 'agent';
  }
  const homeassistant: HomeAssistantConfig = {
    enabled: r.bool('homeassistant.enabled', h.enabled, false),
    discoveryPrefix,
    nodeId,
  };
  if (homeassistant.enabled && topics.payload === 'cbor')
    r.problem(
      'topics.payload',
      'Home Assistant cannot read CBOR readings: use json (or raw) with homeassistant.enabled',
    );

  // metrics
  let metrics: MetricsConfig | undefined;
  const mt = r.object('metrics', root.metrics, ['listen']) ?? {};
  const listen = r.string('metrics.listen', mt.listen);
  if (listen !== undefined) {
    const address = parseListen(listen);
    if (address === undefined)
      r.problem(
        'metrics.listen',
        `must be HOST:PORT such as 127.0.0.1:9101 or [::1]:9101 (port 0..65535); got ${show(listen)}`,
      );
    else metrics = { listen, ...address };
  }

  if (r.problems.length > 0) throw new ConfigError(r.problems, options.source);
  const config: AgentConfig = {
    id,
    stateDir,
    log,
    statusIntervalMs,
    healthIntervalMs,
    commandTimeoutMs,
    expectedIntervalMs,
    serial,
    mqtt,
    topics,
    queue,
    homeassistant,
  };
  if (metrics !== undefined) config.metrics = metrics;
  return config;
}

/** `homeassistant.node_id` when not given: the agent id in Home Assistant's characters. */
export function defaultNodeId(agentId: string): string {
  return agentId.replace(/[^A-Za-z0-9_-]/g, '_');
}

/** `host:port`, `[v6]:port`; undefined when it is neither. */
function parseListen(s: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(s);
  if (m === null) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? m[2], port };
}

type Yaml = typeof import('yaml');
let yamlModule: Yaml | undefined;
/**
 * yaml is loaded only for a YAML config (or to put line numbers on a JSON config's problems):
 * it costs ~8 MB of RSS for the life of the process, on a gateway where memory is the budget.
 */
function yaml(): Yaml {
  yamlModule ??= createRequire(import.meta.url)('yaml') as Yaml;
  return yamlModule;
}

/**
 * A JSON config whose keys are all unique, parsed without yaml; undefined when the text is not
 * JSON or repeats a key (the YAML path then reports it, with its line).
 */
function parseStrictJson(text: string): unknown {
  if (!/^\s*\{/.test(text)) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  return hasDuplicateKeys(text) ? undefined : raw;
}

/** Scans valid JSON for a key given twice in one object (JSON.parse silently keeps the last). */
function hasDuplicateKeys(json: string): boolean {
  const stack: Array<Set<string> | null> = [];
  let expectKey = false;
  for (let i = 0; i < json.length; i++) {
    const ch = json[i];
    if (ch === '{') {
      stack.push(new Set());
      expectKey = true;
    } else if (ch === '[') {
      stack.push(null);
      expectKey = false;
    } else if (ch === '}' || ch === ']') {
      stack.pop();
      expectKey = false;
    } else if (ch === ',') {
      expectKey = stack[stack.length - 1] !== null;
    } else if (ch === '"') {
      let j = i + 1;
      while (json[j] !== '"') j += json[j] === '\\' ? 2 : 1;
      if (expectKey) {
        const key = JSON.parse(json.slice(i, j + 1)) as string;
        const keys = stack[stack.length - 1];
        if (keys?.has(key)) return true;
        keys?.add(key);
        expectKey = false;
      }
      i = j;
    }
  }
  return false;
}

/** Parses YAML (JSON is YAML) text; problems carry line numbers. */
export function parseConfigText(text: string, options: ParseOptions = {}): AgentConfig {
  const source = options.source ?? 'config';
  if (text.length > 1 << 20) throw new ConfigError([{ path: '', message: 'larger than 1 MiB' }], source);
  const json = parseStrictJson(text);
  if (json !== undefined) {
    try {
      return parseConfig(json, { ...options, source });
    } catch (e) {
      // Problems in a JSON config: the YAML path below finds them again, with line numbers.
      if (!(e instanceof ConfigError)) throw e;
    }
  }
  const { LineCounter, parseDocument } = yaml();
  const lc = new LineCounter();
  // uniqueKeys: a key given twice is a mistake, not "last one wins".
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.slice(0, 10).map((e) => ({
        path: '',
        message: `YAML: ${e.message.split('\n')[0]}`,
        line: e.linePos?.[0]?.line,
      })),
      source,
    );
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    throw new ConfigError([{ path: '', message: `YAML: ${(e as Error).message}` }], source);
  }
  try {
    return parseConfig(raw, { ...options, source });
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    for (const p of e.problems) p.line = lineOf(doc, lc, p.path);
    throw new ConfigError(e.problems, source);
  }
}

function lineOf(doc: Document.Parsed, lc: LineCounter, keyPath: string): number | undefined {
  const { isMap, isSeq } = yaml();
  const parts: Array<string | number> = [];
  for (const m of keyPath.matchAll(/([^.[\]]+)|\[(\d+)\]/g))
    parts.push(m[2] !== undefined ? Number(m[2]) : m[1]);
  // The deepest node that exists: a missing key points at its parent mapping.
  for (let n = parts.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(parts.slice(0, n), true);
    if (node === undefined || node === null) continue;
    // For a key that exists, prefer the key's own position.
    if (
      n > 0 &&
      (isMap(doc.getIn(parts.slice(0, n - 1), true)) || isSeq(doc.getIn(parts.slice(0, n - 1), true)))
    ) {
      const parent = doc.getIn(parts.slice(0, n - 1), true);
      if (isMap(parent)) {
        const pair = parent.items.find((it) => {
          const k = it.key as { value?: unknown } | null;
          return k !== null && typeof k === 'object' && k.value === parts[n - 1];
        });
        const range = (pair?.key as { range?: [number, number, number] } | undefined)?.range;
        if (range) return lc.linePos(range[0]).line;
      }
    }
    const range = (node as { range?: [number, number, number] }).range;
    if (range) return lc.linePos(range[0]).line;
  }
  return undefined;
}

/** Reads and validates a config file. */
export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(
      [{ path: '', message: `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` }],
      file,
    );
  }
  return parseConfigText(text, { baseDir: path.dirname(path.resolve(file)), env, source: file });
}

/** `64MiB` for whole binary units, else the number of bytes: what `parseSize` reads back. */
function fmtSize(n: number): string | number {
  for (const [unit, size] of [
    ['GiB', 2 ** 30],
    ['MiB', 2 ** 20],
    ['KiB', 1024],
  ] as const)
    if (n >= size && n % size === 0) return `${n / size}${unit}`;
  return n;
}

/**
 * The resolved config in the file's own keys and units (`agent.statusInterval: 2s`, not
 * `statusIntervalMs: 2000`), for `check` and for naming changed settings on a reload. Parsing
 * it again gives the same config (the password aside, which `check` masks).
 */
export function configDocument(c: AgentConfig): Record<string, unknown> {
  const m = c.mqtt;
  const mqtt: Record<string, unknown> = { url: m.url, clientId: m.clientId };
  if (m.username !== undefined) mqtt.username = m.username;
  if (m.password !== undefined) mqtt.password = m.password;
  if (m.tls !== undefined) mqtt.tls = { ...m.tls };
  Object.assign(mqtt, {
    version: m.version,
    keepalive: m.keepalive,
    qos: m.qos,
    maxInflight: m.maxInflight,
    persistentSession: m.persistentSession,
    sessionExpiry: fmtMs(m.sessionExpiryS * 1000),
    reconnectMin: fmtMs(m.reconnectMinMs),
    reconnectMax: fmtMs(m.reconnectMaxMs),
  });
  const q = c.queue;
  const queue: Record<string, unknown> = {
    dir: q.dir,
    fsync: typeof q.fsync === 'string' ? q.fsync : fmtMs(q.fsync.intervalMs),
    maxBytes: fmtSize(q.maxBytes),
  };
  if (q.maxCount !== undefined) queue.maxCount = q.maxCount;
  if (q.maxAgeMs !== undefined) queue.maxAge = fmtMs(q.maxAgeMs);
  queue.dropPolicy = q.dropPolicy;
  if (q.segmentBytes !== undefined) queue.segmentBytes = fmtSize(q.segmentBytes);
  return {
    agent: {
      id: c.id,
      stateDir: c.stateDir,
      log: { ...c.log },
      statusInterval: fmtMs(c.statusIntervalMs),
      healthInterval: fmtMs(c.healthIntervalMs),
      commandTimeout: fmtMs(c.commandTimeoutMs),
      expectedInterval: fmtMs(c.expectedIntervalMs),
    },
    serial: c.serial.map((p) => {
      const o: Record<string, unknown> = { name: p.name };
      if (p.path !== undefined) o.path = p.path;
      if (p.usb !== undefined) o.usb = { ...p.usb };
      o.baud = p.baud;
      if (p.modbus !== undefined) o.protocol = 'modbus-rtu';
      else o.framing = p.framing;
      if (p.dataBits !== undefined) o.dataBits = p.dataBits;
      if (p.parity !== undefined) o.parity = p.parity;
      if (p.stopBits !== undefined) o.stopBits = p.stopBits;
      if (p.device !== undefined) o.device = p.device;
      if (p.expectedIntervalMs !== undefined) o.expectedInterval = fmtMs(p.expectedIntervalMs);
      o.writeTimeout = fmtMs(p.writeTimeoutMs);
      if (p.modbus !== undefined) Object.assign(o, modbusDocument(p.modbus));
      return o;
    }),
    mqtt,
    topics: { ...c.topics },
    queue,
    homeassistant: {
      enabled: c.homeassistant.enabled,
      discovery_prefix: c.homeassistant.discoveryPrefix,
      node_id: c.homeassistant.nodeId,
    },
    ...(c.metrics === undefined ? {} : { metrics: { listen: c.metrics.listen } }),
  };
}

/** The config with secrets masked, for `check` and logs. */
export function redacted(c: AgentConfig): AgentConfig {
  return { ...c, mqtt: { ...c.mqtt, password: c.mqtt.password === undefined ? undefined : '********' } };
}
