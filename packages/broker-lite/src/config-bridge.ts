import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { hasWildcard } from '@mqtt-edge/codec';
import { bool, type ConfigCtx, fail, int, intOf, one, path } from './config-args.ts';

/**
 * Mosquitto's bridge section of mosquitto.conf: `connection NAME` starts a bridge and the bridge
 * keys after it configure that bridge until the next `connection`. General keys may still appear
 * in between (as in Mosquitto). Anything a bridge would silently do differently is refused.
 */

export type BridgeDirection = 'in' | 'out' | 'both';

export interface BridgeTopicConfig {
  /** The subscription pattern without prefixes; '' when the prefixes name the whole topic. */
  pattern: string;
  direction: BridgeDirection;
  qos: 0 | 1 | 2;
  localPrefix: string;
  remotePrefix: string;
  line: number;
}

export interface BridgeAddress {
  host: string;
  port: number;
}

export interface BridgeConfig {
  name: string;
  file: string;
  line: number;
  addresses: BridgeAddress[];
  /** true: each new attempt goes to the next address; false: back to the first after a connection ended. */
  roundRobin: boolean;
  topics: BridgeTopicConfig[];
  remoteClientId: string;
  localClientId: string;
  remoteUsername?: string;
  remotePassword?: string;
  cleanSession: boolean;
  /** 3 = mqttv31, 4 = mqttv311, 5 = mqttv50. */
  protocolVersion: 3 | 4 | 5;
  cafile?: string;
  certfile?: string;
  keyfile?: string;
  insecure: boolean;
  keepalive: number;
  /** Seconds. capSeconds undefined: a constant delay (one value); else backoff with jitter. */
  restartTimeout: { baseSeconds: number; capSeconds?: number };
  startType: 'automatic' | 'once' | 'lazy';
  /** start_type lazy: connect once more than this many messages are queued (Mosquitto: 10). */
  threshold: number;
  /** start_type lazy: seconds without traffic and with an empty queue before disconnecting. */
  idleTimeoutSeconds: number;
  notifications: boolean;
  notificationsLocalOnly: boolean;
  /** Default `$SYS/broker/connection/REMOTE_CLIENTID/state` (bridgeSysName). */
  notificationTopic: string;
  tryPrivate: boolean;
  /** 0 = no limit beyond the protocol's. */
  maxPacketSize: number;
  outgoingRetain: boolean;
  /** broker-lite: bounds of the on-disk outgoing queue (0 = unbounded). */
  queueMaxBytes: number;
  queueMaxAgeSeconds: number;
  queueMaxCount: number;
  queueDropPolicy: 'drop-oldest' | 'reject-new';
}

export interface BridgeParseState {
  bridges: BridgeConfig[];
  /** Keys seen in the current bridge (each may be given once, except address and topic). */
  seen: Set<string>;
  warn(ctx: ConfigCtx, message: string): void;
}

const MAX_BRIDGES = 64;
const MAX_TOPICS = 1024;
const MAX_ADDRESSES = 32;
const MAX_PACKET = 268_435_460;

/** Mosquitto writes an empty prefix or pattern as `""`. */
function unquote(s: string): string {
  return s === '""' ? '' : s;
}

/** `host`, `host:port`, `[v6]:port`; several separated by commas and/or spaces. */
export function parseAddresses(ctx: ConfigCtx, args: string[]): BridgeAddress[] {
  const words = args
    .join(' ')
    .split(/[\s,]+/)
    .filter((w) => w !== '');
  if (words.length === 0) fail(ctx, 'missing value (expected host[:port], several for failover)');
  if (words.length > MAX_ADDRESSES) fail(ctx, `more than ${MAX_ADDRESSES} addresses`);
  return words.map((w) => {
    let host = w;
    let port = 1883;
    const v6 = /^\[([^\]]+)\](?::(.*))?$/.exec(w);
    if (v6) {
      host = v6[1];
      if (v6[2] !== undefined) port = intOf(ctx, v6[2], 1, 65_535);
    } else {
      const colon = w.lastIndexOf(':');
      if (colon >= 0 && w.indexOf(':') === colon) {
        host = w.slice(0, colon);
        port = intOf(ctx, w.slice(colon + 1), 1, 65_535);
      }
    }
    if (host === '' || host.length > 253 || /[^A-Za-z0-9.:\-_%]/.test(host))
      fail(ctx, `invalid address '${w.slice(0, 80)}'`);
    return { host, port };
  });
}

function parseTopic(ctx: ConfigCtx, args: string[]): BridgeTopicConfig {
  if (args.length === 0)
    fail(ctx, 'missing value (expected PATTERN [in|out|both] [QOS] [LOCAL_PREFIX REMOTE_PREFIX])');
  if (args.length > 5) fail(ctx, `too many values (${args.length}); expected at most 5`);
  const pattern = unquote(args[0]);
  let direction: BridgeDirection = 'out';
  let qos: 0 | 1 | 2 = 0;
  if (args.length >= 2) {
    const d = args[1];
    if (d !== 'in' && d !== 'out' && d !== 'both')
      fail(ctx, `invalid direction '${d.slice(0, 40)}' (expected in, out or both)`);
    direction = d;
  }
  if (args.length >= 3) qos = intOf(ctx, args[2], 0, 2) as 0 | 1 | 2;
  if (args.length === 4) fail(ctx, 'a local prefix needs a remote prefix too (use "" for none)');
  const localPrefix = args.length >= 4 ? unquote(args[3]) : '';
  const remotePrefix = args.length >= 5 ? unquote(args[4]) : '';
  for (const [what, p] of [
    ['local prefix', localPrefix],
    ['remote prefix', remotePrefix],
  ] as const) {
    if (hasWildcard(p)) fail(ctx, `the ${what} '${p.slice(0, 80)}' may not contain + or #`);
    if (p.length > 65_535) fail(ctx, `the ${what} is too long`);
  }
  if (pattern === '') {
    // Mosquitto: an empty pattern means the prefixes name the topic exactly.
    if (localPrefix === '' && remotePrefix === '')
      fail(ctx, 'an empty pattern ("") needs a local or remote prefix that names the topic');
  } else checkFilter(ctx, pattern);
  if (pattern === '') {
    for (const p of [localPrefix, remotePrefix]) if (p !== '') checkFilter(ctx, p);
  }
  return { pattern, direction, qos, localPrefix, remotePrefix, line: ctx.line };
}

function checkFilter(ctx: ConfigCtx, f: string): void {
  const levels = f.split('/');
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i];
    if (l.includes('#') && (l !== '#' || i !== levels.length - 1))
      fail(ctx, `invalid topic pattern '${f.slice(0, 80)}' ('#' must be the last level on its own)`);
    if (l.includes('+') && l !== '+')
      fail(ctx, `invalid topic pattern '${f.slice(0, 80)}' ('+' must be a whole level)`);
  }
  if (f.includes('\u0000')) fail(ctx, 'topic pattern contains NUL');
}

function current(state: BridgeParseState, ctx: ConfigCtx): BridgeConfig {
  const b = state.bridges[state.bridges.length - 1];
  if (b === undefined) fail(ctx, "bridge settings must follow a 'connection NAME' line");
  return b;
}

/** Each bridge key once per bridge (a second value would silently win in Mosquitto). */
function once(state: BridgeParseState, ctx: ConfigCtx, key: string): void {
  if (state.seen.has(key)) fail(ctx, `given twice for bridge '${current(state, ctx).name}'`);
  state.seen.add(key);
}

type Handler = (b: BridgeConfig, ctx: ConfigCtx, args: string[], state: BridgeParseState) => void;

const IGNORED_BRIDGE: Record<string, string> = {
  bridge_attempt_unsubscribe: 'broker-lite never unsubscribes on the remote (the session is new or kept)',
  bridge_tls_version: 'Node.js negotiates TLS 1.2 or 1.3',
  local_username: 'the bridge connects to this broker internally, without authentication',
  local_password: 'the bridge connects to this broker internally, without authentication',
  local_cleansession: 'the local side follows cleansession (persistent when persistence is on)',
};

const REFUSED_BRIDGE: Record<string, string> = {
  bridge_capath: 'give the CA certificates in one file with bridge_cafile',
  bridge_psk: 'TLS-PSK is not supported',
  bridge_identity: 'TLS-PSK is not supported',
  bridge_require_ocsp: 'OCSP is not supported',
  bridge_bind_address: 'not supported (the system picks the source address)',
  bridge_alpn: 'not supported',
};

const HANDLERS: Record<string, Handler> = {
  address(b, ctx, args) {
    b.addresses.push(...parseAddresses(ctx, args));
    if (b.addresses.length > MAX_ADDRESSES) fail(ctx, `more than ${MAX_ADDRESSES} addresses`);
  },
  topic(b, ctx, args) {
    if (b.topics.length >= MAX_TOPICS) fail(ctx, `more than ${MAX_TOPICS} topics in one bridge`);
    b.topics.push(parseTopic(ctx, args));
  },
  remote_clientid(b, ctx, args, state) {
    const v = one(ctx, args, 'a client id');
    if (v.length > 65_535) fail(ctx, 'client id too long');
    b.remoteClientId = v;
    if (!state.seen.has('notification_topic')) b.notificationTopic = defaultNotificationTopic(b);
  },
  local_clientid(b, ctx, args) {
    b.localClientId = one(ctx, args, 'a client id');
  },
  remote_username(b, ctx, args) {
    b.remoteUsername = one(ctx, args, 'a user name');
  },
  remote_password(b, ctx, args) {
    b.remotePassword = one(ctx, args, 'a password');
  },
  cleansession(b, ctx, args) {
    b.cleanSession = bool(ctx, args);
  },
  bridge_protocol_version(b, ctx, args) {
    const v = one(ctx, args, 'mqttv31, mqttv311 or mqttv50');
    if (v === 'mqttv31') b.protocolVersion = 3;
    else if (v === 'mqttv311') b.protocolVersion = 4;
    else if (v === 'mqttv50') b.protocolVersion = 5;
    else fail(ctx, `invalid value '${v.slice(0, 40)}' (expected mqttv31, mqttv311 or mqttv50)`);
  },
  bridge_cafile(b, ctx, args) {
    b.cafile = path(ctx, args);
  },
  bridge_certfile(b, ctx, args) {
    b.certfile = path(ctx, args);
  },
  bridge_keyfile(b, ctx, args) {
    b.keyfile = path(ctx, args);
  },
  bridge_insecure(b, ctx, args, state) {
    b.insecure = bool(ctx, args);
    if (b.insecure)
      state.warn(ctx, "the remote broker's certificate host name is not checked (bridge_insecure true)");
  },
  keepalive_interval(b, ctx, args) {
    const n = int(ctx, args, 0, 65_535);
    if (n !== 0 && n < 5) fail(ctx, `value ${n} is too small (at least 5 seconds, or 0 to disable)`);
    b.keepalive = n;
  },
  restart_timeout(b, ctx, args) {
    if (args.length === 0 || args.length > 2)
      fail(ctx, 'expected one value (a constant delay) or two (backoff base and cap), in seconds');
    const base = intOf(ctx, args[0], 1, 86_400);
    if (args.length === 1) {
      b.restartTimeout = { baseSeconds: base };
      return;
    }
    const cap = intOf(ctx, args[1], 1, 86_400);
    if (cap < base) fail(ctx, `the cap (${cap}) is smaller than the base (${base})`);
    b.restartTimeout = { baseSeconds: base, capSeconds: cap };
  },
  start_type(b, ctx, args) {
    const v = one(ctx, args, 'automatic, lazy or once');
    if (v === 'automatic' || v === 'once' || v === 'lazy') b.startType = v;
    else fail(ctx, `invalid value '${v.slice(0, 40)}' (expected automatic, lazy or once)`);
  },
  threshold(b, ctx, args) {
    b.threshold = int(ctx, args, 1, 1_000_000_000);
  },
  idle_timeout(b, ctx, args) {
    b.idleTimeoutSeconds = int(ctx, args, 1, 86_400);
  },
  notifications(b, ctx, args) {
    b.notifications = bool(ctx, args);
  },
  notifications_local_only(b, ctx, args) {
    b.notificationsLocalOnly = bool(ctx, args);
  },
  notification_topic(b, ctx, args) {
    const v = one(ctx, args, 'a topic');
    if (hasWildcard(v)) fail(ctx, `'${v.slice(0, 80)}' is not a topic name (no + or #)`);
    b.notificationTopic = v;
  },
  try_private(b, ctx, args) {
    b.tryPrivate = bool(ctx, args);
  },
  bridge_max_packet_size(b, ctx, args) {
    const n = int(ctx, args, 0, MAX_PACKET);
    if (n !== 0 && n < 20) fail(ctx, `value ${n} is too small (at least 20 bytes, or 0 for no limit)`);
    b.maxPacketSize = n;
  },
  bridge_outgoing_retain(b, ctx, args) {
    b.outgoingRetain = bool(ctx, args);
  },
  round_robin(b, ctx, args) {
    b.roundRobin = bool(ctx, args);
  },
  bridge_queue_max_bytes(b, ctx, args) {
    b.queueMaxBytes = int(ctx, args, 0, Number.MAX_SAFE_INTEGER);
  },
  bridge_queue_max_messages(b, ctx, args) {
    b.queueMaxCount = int(ctx, args, 0, Number.MAX_SAFE_INTEGER);
  },
  bridge_queue_max_age(b, ctx, args) {
    b.queueMaxAgeSeconds = int(ctx, args, 0, 100 * 365 * 86_400);
  },
  bridge_queue_drop_policy(b, ctx, args) {
    const v = one(ctx, args, 'drop-oldest or reject-new');
    if (v !== 'drop-oldest' && v !== 'reject-new')
      fail(ctx, `invalid value '${v.slice(0, 40)}' (expected drop-oldest or reject-new)`);
    b.queueDropPolicy = v;
  },
};
HANDLERS.addresses = HANDLERS.address;

/**
 * The level naming a bridge under `$SYS/broker/connection/`: its remote client id, as Mosquitto
 * names it (unique on the remote, where bridges of several gateways may share a connection
 * name), or the connection name when the id cannot be one topic level's text (empty, `+`, `#`).
 */
export function bridgeSysName(b: Pick<BridgeConfig, 'name' | 'remoteClientId'>): string {
  const id = b.remoteClientId;
  return id === '' || id.includes('+') || id.includes('#') ? b.name : id;
}

function defaultNotificationTopic(b: Pick<BridgeConfig, 'name' | 'remoteClientId'>): string {
  return `$SYS/broker/connection/${bridgeSysName(b)}/state`;
}

function newBridge(name: string, ctx: ConfigCtx): BridgeConfig {
  const host = hostname();
  const remoteClientId = `${host}.${name}`;
  return {
    name,
    file: ctx.file,
    line: ctx.line,
    addresses: [],
    roundRobin: false,
    topics: [],
    // Mosquitto's defaults.
    remoteClientId,
    localClientId: `local.${host}.${name}`,
    cleanSession: false,
    protocolVersion: 4,
    insecure: false,
    keepalive: 60,
    restartTimeout: { baseSeconds: 5, capSeconds: 30 },
    startType: 'automatic',
    threshold: 10,
    idleTimeoutSeconds: 60,
    notifications: true,
    notificationsLocalOnly: false,
    notificationTopic: defaultNotificationTopic({ name, remoteClientId }),
    tryPrivate: true,
    maxPacketSize: 0,
    outgoingRetain: true,
    queueMaxBytes: 64 * 1024 * 1024,
    queueMaxAgeSeconds: 0,
    queueMaxCount: 0,
    queueDropPolicy: 'drop-oldest',
  };
}

/** Handles a bridge key; false when `key` is not one. Throws ConfigError. */
export function applyBridgeKey(
  state: BridgeParseState,
  ctx: ConfigCtx,
  key: string,
  args: string[],
): boolean {
  if (key === 'connection') {
    const name = one(ctx, args, 'a bridge name');
    const problem = bridgeNameProblem(name);
    if (problem !== undefined) fail(ctx, problem);
    const dup = state.bridges.find((b) => b.name === name);
    if (dup) fail(ctx, `a bridge named '${name}' is already defined at ${dup.file}:${dup.line}`);
    if (state.bridges.length >= MAX_BRIDGES) fail(ctx, `more than ${MAX_BRIDGES} bridges`);
    state.bridges.push(newBridge(name, ctx));
    state.seen.clear();
    return true;
  }
  if (Object.hasOwn(REFUSED_BRIDGE, key)) {
    current(state, ctx);
    fail(ctx, REFUSED_BRIDGE[key]);
  }
  if (Object.hasOwn(IGNORED_BRIDGE, key)) {
    current(state, ctx);
    state.warn(ctx, `ignored: ${IGNORED_BRIDGE[key]}`);
    return true;
  }
  const h = Object.hasOwn(HANDLERS, key) ? HANDLERS[key] : undefined;
  if (h === undefined) return false;
  const b = current(state, ctx);
  if (key !== 'address' && key !== 'addresses' && key !== 'topic') once(state, ctx, key);
  h(b, ctx, args, state);
  return true;
}

/** Whole-bridge checks once every file is read. */
export function checkBridges(bridges: BridgeConfig[]): void {
  const ids = new Map<string, BridgeConfig>();
  for (const b of bridges) {
    const ctx: ConfigCtx = { file: b.file, line: b.line, key: 'connection', dir: '' };
    if (b.addresses.length === 0) fail(ctx, `bridge '${b.name}' has no address`);
    if (b.topics.length === 0) fail(ctx, `bridge '${b.name}' has no topic`);
    if ((b.certfile === undefined) !== (b.keyfile === undefined))
      fail(ctx, `bridge '${b.name}' needs both bridge_certfile and bridge_keyfile for a client certificate`);
    if (b.certfile !== undefined && b.cafile === undefined)
      fail(ctx, `bridge '${b.name}' has a client certificate but no bridge_cafile (TLS needs bridge_cafile)`);
    if (b.remotePassword !== undefined && b.remoteUsername === undefined)
      fail(ctx, `bridge '${b.name}' has remote_password without remote_username`);
    if (b.protocolVersion !== 5 && !b.cleanSession && b.remoteClientId === '')
      fail(ctx, `bridge '${b.name}' needs a remote_clientid with cleansession false`);
    const other = ids.get(b.localClientId);
    if (other) fail(ctx, `bridges '${other.name}' and '${b.name}' use the same local client id`);
    ids.set(b.localClientId, b);
  }
}

/** For `broker-lite check`. */
export function describeBridge(b: BridgeConfig): string[] {
  const out: string[] = [];
  out.push(`connection ${b.name}  # ${b.file}:${b.line}`);
  out.push(
    `  address ${b.addresses.map((a) => (a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`)).join(' ')}`,
  );
  for (const t of b.topics)
    out.push(
      `  topic ${t.pattern || '""'} ${t.direction} ${t.qos} ${t.localPrefix || '""'} ${t.remotePrefix || '""'}`,
    );
  out.push(
    `  bridge_protocol_version ${b.protocolVersion === 5 ? 'mqttv50' : b.protocolVersion === 4 ? 'mqttv311' : 'mqttv31'}`,
  );
  out.push(`  remote_clientid ${b.remoteClientId}`);
  out.push(`  cleansession ${b.cleanSession}`);
  out.push(`  tls ${b.cafile !== undefined}${b.certfile ? ' (client certificate)' : ''}`);
  const rt = b.restartTimeout;
  out.push(`  restart_timeout ${rt.baseSeconds}${rt.capSeconds !== undefined ? ` ${rt.capSeconds}` : ''}`);
  out.push(
    `  start_type ${b.startType}${b.startType === 'lazy' ? ` (threshold ${b.threshold}, idle_timeout ${b.idleTimeoutSeconds})` : ''}`,
  );
  out.push(`  notifications ${b.notifications} (${b.notificationTopic})`);
  out.push(`  try_private ${b.tryPrivate}`);
  out.push(
    `  queue max_bytes ${b.queueMaxBytes} max_messages ${b.queueMaxCount} max_age ${b.queueMaxAgeSeconds} policy ${b.queueDropPolicy}`,
  );
  return out;
}

/**
 * Why `name` cannot name a bridge, or undefined when it can. The name becomes a directory under
 * the bridges' queue directory (and part of a client id and a `$SYS` topic): letters, digits,
 * '.', '_', '-' keep it one plain path segment, and '.' and '..' would be the queue directory
 * itself or its parent (the persistence directory), so two bridges, or a bridge and the broker,
 * would share files.
 */
export function bridgeNameProblem(name: string): string | undefined {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(name))
    return `invalid bridge name '${name.slice(0, 40)}' (letters, digits, '.', '_', '-'; at most 64)`;
  if (name === '.' || name === '..')
    return `invalid bridge name '${name}': it names a directory for the bridge's queue, and '${name}' is not a directory of its own; choose a name such as 'upstream'`;
  return undefined;
}

/**
 * Where a bridge keeps its queue: `persistence_location/bridges/NAME` with persistence, else
 * `$XDG_STATE_HOME/broker-lite/bridges/NAME` (default `~/.local/state/...`), never a tmp dir
 * (the queue must survive a reboot).
 */
export function defaultBridgeDir(persistenceLocation: string | undefined, name: string): string {
  const problem = bridgeNameProblem(name);
  if (problem !== undefined) throw new Error(problem);
  if (persistenceLocation !== undefined) return join(persistenceLocation, 'bridges', name);
  const state = process.env.XDG_STATE_HOME || join(homedir(), '.local', 'state');
  return join(state, 'broker-lite', 'bridges', name);
}
