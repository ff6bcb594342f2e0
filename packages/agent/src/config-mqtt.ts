/**
 * The `mqtt:` section: the broker's URL, the credentials (in the file, a file of their own or the
 * environment), TLS files and the session's settings.
 */
import { readFileSync } from 'node:fs';
import { fmtMs, type Obj, type Reader, show } from './config-reader.ts';

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

export const DEFAULT_PASSWORD_ENV = 'MQTT_EDGE_PASSWORD';
export const DEFAULT_USERNAME_ENV = 'MQTT_EDGE_USERNAME';

const MQTT_KEYS = [
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
] as const;

/** `agentId` names the default client id. */
export function readMqttSection(r: Reader, v: unknown, agentId: string, env: NodeJS.ProcessEnv): MqttConfig {
  const m = r.object('mqtt', v, MQTT_KEYS, false) ?? {};
  const url = r.string('mqtt.url', m.url, { required: true }) ?? 'mqtt://localhost';
  const parsed = readUrl(r, url);
  const version = r.int('mqtt.version', m.version, 4, 5, 5) as 4 | 5;
  const clientId = r.string('mqtt.clientId', m.clientId) ?? `mqtt-edge-agent-${agentId}`;
  if (clientId.length > 128) r.problem('mqtt.clientId', 'at most 128 characters');
  const { username, password } = readCredentials(r, m, version, env);
  const tls = m.tls === undefined ? undefined : readTls(r, m.tls, parsed);
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
  return mqtt;
}

/** The parsed URL, or undefined when it is none (reported). */
function readUrl(r: Reader, url: string): URL | undefined {
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
  return parsed;
}

/** The password: the environment's over the file's over the config's own. */
function readCredentials(
  r: Reader,
  m: Obj,
  version: 4 | 5,
  env: NodeJS.ProcessEnv,
): { username?: string; password?: string } {
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
      r.problem('mqtt.passwordFile', `cannot read ${passwordFile}: ${errorCode(e)}`);
    }
  }
  const fromEnv = env[passwordEnv];
  if (fromEnv !== undefined && fromEnv !== '') password = fromEnv;
  if (password !== undefined && username === undefined) {
    if (version === 5) username = undefined;
    else r.problem('mqtt.password', 'MQTT 3.1.1 needs mqtt.username with a password');
  }
  return { username, password };
}

/** `mqtt.tls`: each file given must be readable when the config is read. */
function readTls(r: Reader, v: unknown, url: URL | undefined): TlsFiles | undefined {
  const t = r.object('mqtt.tls', v, ['ca', 'cert', 'key', 'rejectUnauthorized', 'servername']);
  if (t === undefined) return undefined;
  const tls: TlsFiles = {
    rejectUnauthorized: r.bool('mqtt.tls.rejectUnauthorized', t.rejectUnauthorized, true),
  };
  for (const k of ['ca', 'cert', 'key'] as const) {
    const f = r.filePath(`mqtt.tls.${k}`, t[k]);
    if (f === undefined) continue;
    try {
      readFileSync(f);
      tls[k] = f;
    } catch (e) {
      r.problem(`mqtt.tls.${k}`, `cannot read ${f}: ${errorCode(e)}`);
    }
  }
  const sn = r.string('mqtt.tls.servername', t.servername);
  if (sn !== undefined) tls.servername = sn;
  if ((tls.cert === undefined) !== (tls.key === undefined) && t.cert !== undefined && t.key !== undefined) {
    // both given, one unreadable: already reported
  } else if ((t.cert === undefined) !== (t.key === undefined))
    r.problem('mqtt.tls', 'cert and key go together (client certificate authentication)');
  if (url !== undefined && url.protocol !== 'mqtts:')
    r.problem('mqtt.tls', 'TLS settings need an mqtts:// url');
  return tls;
}

function errorCode(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
}

/** The section in the file's own keys and units (the password as it is: `check` masks it). */
export function mqttDocument(m: MqttConfig): Record<string, unknown> {
  const mqtt: Record<string, unknown> = { url: m.url, clientId: m.clientId };
  if (m.username !== undefined) mqtt.username = m.username;
  if (m.password !== undefined) mqtt.password = m.password;
  if (m.tls !== undefined) mqtt.tls = { ...m.tls };
  return Object.assign(mqtt, {
    version: m.version,
    keepalive: m.keepalive,
    qos: m.qos,
    maxInflight: m.maxInflight,
    persistentSession: m.persistentSession,
    sessionExpiry: fmtMs(m.sessionExpiryS * 1000),
    reconnectMin: fmtMs(m.reconnectMinMs),
    reconnectMax: fmtMs(m.reconnectMaxMs),
  });
}
