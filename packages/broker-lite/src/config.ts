import { closeSync, constants, fstatSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { nearest } from '@mqtt-edge/log';
import { bool, type ConfigCtx as Ctx, fail, int, one, path } from './config-args.ts';
import { applyBridgeKey, type BridgeConfig, type BridgeParseState, checkBridges } from './config-bridge.ts';
import { ConfigError, type ConfigWarning } from './config-error.ts';
import { DEFAULT_LOG_TYPES, LOG_TYPES, type LogType } from './log.ts';
import { DEFAULT_SYSLOG_SOCKET } from './log-syslog.ts';
import { DEFAULT_BROKER_OPTIONS } from './options.ts';
import { compileStrftime, StrftimeError } from './strftime.ts';
import { MAX_OUT_ALIAS_LIMIT, OUT_ALIAS_LIMIT } from './topic-alias.ts';

export type { BridgeConfig, BridgeTopicConfig } from './config-bridge.ts';
export { ConfigError, type ConfigWarning, formatWarning } from './config-error.ts';

/**
 * A Mosquitto-compatible subset of `mosquitto.conf`. Parsing is strict: an unknown key or a bad
 * value stops with a ConfigError naming file:line; a key that is accepted but not acted on is a
 * warning naming file:line. The result still names files (certificates, password and ACL
 * files); config-build.ts reads them and makes BrokerOptions.
 */

export interface ListenerConfig {
  port: number;
  /** Undefined: every interface. */
  host?: string;
  protocol: 'mqtt' | 'websockets';
  certfile?: string;
  keyfile?: string;
  cafile?: string;
  requireCertificate: boolean;
  useIdentityAsUsername: boolean;
  useSubjectAsUsername: boolean;
  useUsernameAsClientid: boolean;
  /** Mosquitto `http_dir`: static files served over HTTP (websockets listeners only). */
  httpDir?: string;
  /** `status_page true`: the built-in status page over HTTP (websockets listeners only). */
  statusPage: boolean;
  /**
   * With `per_listener_settings true`: this listener's allow_anonymous (set by finish(): false
   * unless given, as in Mosquitto 2), password_file and acl_file. Undefined otherwise.
   */
  security?: ListenerSecurityConfig;
  /** Where it was declared (0 for the implicit ones). */
  file: string;
  line: number;
}

export interface ListenerSecurityConfig {
  allowAnonymous?: boolean;
  passwordFile?: string;
  aclFile?: string;
}

export interface MetricsListenerConfig {
  port: number;
  /** Undefined: every interface, as `listener PORT`. */
  host?: string;
  file: string;
  line: number;
}

export type LogDestConfig =
  | { kind: 'stdout' }
  | { kind: 'stderr' }
  | { kind: 'file'; path: string; file?: string; line?: number }
  | { kind: 'syslog'; file?: string; line?: number }
  | { kind: 'topic' };

export interface BrokerConfig {
  /** The main file, or undefined when running on defaults. */
  file?: string;
  /** Every file read, main first. */
  files: string[];
  listeners: ListenerConfig[];
  /** No listener configured: 127.0.0.1:1883 only, anonymous allowed (Mosquitto 2). */
  localOnly: boolean;
  allowAnonymous: boolean;
  passwordFile?: string;
  aclFile?: string;
  /** Mosquitto `per_listener_settings`: each listener has `security` of its own. */
  perListenerSettings: boolean;
  persistence: boolean;
  persistenceLocation: string;
  autosaveIntervalSeconds: number;
  /** Group-commit window, ms; 0 = every event-loop turn. */
  persistenceCommitWindowMs: number;
  maxInflightMessages: number;
  maxQueuedMessages: number;
  maxQueuedBytes: number;
  messageSizeLimit: number;
  /** 0 = no limit. */
  maxPacketSize: number;
  /** 0 = max_packet_size's limit. */
  maxUnauthenticatedPacketSize: number;
  /** 0 = no limit. */
  maxUnauthenticatedBytes: number;
  /** 0 = no limit. */
  maxTopicLevels: number;
  /** Bytes of RSS; 0 = no limit. */
  memoryLimit: number;
  /** Seconds (Mosquitto `persistent_client_expiration`); 0 = none. */
  persistentClientExpiration: number;
  /** Topic aliases used towards one MQTT 5 client (broker-lite's own key); 0 = none. */
  maxTopicAliasOut: number;
  maxConnections: number;
  maxKeepalive: number;
  retainAvailable: boolean;
  sysInterval: number;
  connectionMessages: boolean;
  logDest: LogDestConfig[];
  logTypes: LogType[];
  logTimestamp: boolean;
  /** Mosquitto `log_timestamp_format` (strftime); undefined: ISO 8601 / Unix seconds. */
  logTimestampFormat?: string;
  /** Mosquitto `log_facility` 0..7 (syslog local0..local7); undefined: daemon. */
  logFacility?: number;
  /** Where `log_dest syslog` sends (broker-lite's own key; Mosquitto always uses /dev/log). */
  logSyslogSocket: string;
  pidFile?: string;
  /** `connection NAME` sections, in file order. */
  bridges: BridgeConfig[];
  /** `metrics_listener PORT [ADDRESS]`: Prometheus `/metrics` over HTTP (broker-lite's own key). */
  metricsListener?: MetricsListenerConfig;
  warnings: ConfigWarning[];
}

export interface ConfigOverrides {
  /** `-p PORT` (repeatable). Like Mosquitto 2: loopback listeners, ignored if the file defines listeners. */
  ports?: number[];
  /** `-v`: every log type. */
  verbose?: boolean;
}

/** Bounds for hostile or mistaken input (a config is a few kilobytes). */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024;
export const MAX_LINE_CHARS = 65_536;
const MAX_INCLUDED_FILES = 1000;
const MAX_PAYLOAD = 268_435_455;

/** Accepted and ignored, with the reason the warning gives. */
const IGNORED: Record<string, string> = {
  user: 'broker-lite does not switch users; run it as the user it should run as',
  persistence_file: 'broker-lite keeps its own storage files inside persistence_location',
  autosave_on_changes: 'broker-lite writes acknowledged messages to disk as they arrive',
  set_tcp_nodelay: 'TCP_NODELAY is always on',
  socket_domain: 'the bind address decides the address family',
  max_inflight_bytes: 'only max_inflight_messages bounds in-flight messages',
  queue_qos0_messages: 'QoS 0 messages are not queued for offline clients',
  check_retain_source: 'not supported',
  allow_duplicate_messages:
    'overlapping subscriptions of one client always bring one copy, at the highest QoS (MQTT 5: with every subscription identifier)',
  websockets_log_level: 'websocket events are logged under log_type websockets',
  websockets_headers_size: 'the ws package bounds headers itself',
  tls_version: 'Node.js negotiates TLS 1.2 or 1.3',
  ciphers: "Node.js's default cipher list is used",
  'ciphers_tls1.3': "Node.js's default cipher list is used",
  tls_engine: 'not supported',
  tls_engine_kpass_sha1: 'not supported',
  tls_keyform: 'keys are read as PEM',
  max_topic_alias: 'not configurable',
  max_qos: 'not configurable; QoS 2 is always available',
};

/** Recognised but refused: ignoring them would silently change who gets in or what they see. */
const UNSUPPORTED: Record<string, string> = {
  mount_point: 'mount points are not supported (clients would not be isolated as configured)',
  clientid_prefixes: 'not supported (it restricts which clients may connect)',
  auth_plugin: 'plugins are not supported; use password_file and acl_file',
  plugin: 'plugins are not supported; use password_file and acl_file',
  auth_opt_: 'plugins are not supported',
  plugin_opt_: 'plugins are not supported',
  psk_file: 'TLS-PSK is not supported',
  psk_hint: 'TLS-PSK is not supported',
  capath: 'give the CA certificates in one file with cafile',
  crlfile: 'certificate revocation lists are not supported',
  certfile_password: 'not supported',
  bind_interface: 'not supported; give the interface address to listener',
  upgrade_outgoing_qos: 'not supported',
  auto_id_prefix: 'not supported',
  allow_zero_length_clientid: 'not supported (zero-length client ids are always allowed, as in MQTT 5)',
  dhparamfile: 'not supported',
  require_ocsp: 'not supported',
  enable_control_api: 'not supported',
  websockets_origin: 'not supported',
};

interface State {
  cfg: BrokerConfig;
  mainDir: string;
  /** The implicit listener configured by `port`, `bind_address` and settings before any `listener`. */
  defaultListener: ListenerConfig;
  defaultListenerUsed: boolean;
  current: ListenerConfig | undefined;
  allowAnonymous?: boolean;
  perListenerSettings: { value: boolean; file: string; line: number } | undefined;
  /** A security key was seen (per_listener_settings must come before any, as in Mosquitto). */
  securitySeen: boolean;
  logTypeSeen: boolean;
  logDestSeen: boolean;
  maxConnectionsAt?: { file: string; line: number };
  includedFiles: number;
  bridge: BridgeParseState;
}

function warn(state: State, ctx: Ctx, message: string): void {
  state.cfg.warnings.push({ file: ctx.file, line: ctx.line, key: ctx.key, message });
}

/** Mosquitto's duration: a whole number and a unit, h d w m (30 days) or y (365 days). */
const DURATION_UNITS: Record<string, number> = {
  h: 3600,
  d: 86_400,
  w: 7 * 86_400,
  m: 30 * 86_400,
  y: 365 * 86_400,
};

function duration(ctx: Ctx, args: string[]): number {
  const v = one(ctx, args, 'a duration such as 12h, 7d, 2w, 1m or 1y');
  const m = /^([0-9]{1,9})([hdwmy])$/.exec(v);
  const n = m === null ? 0 : Number(m[1]) * DURATION_UNITS[m[2]];
  if (n <= 0)
    fail(ctx, `invalid duration '${v.slice(0, 40)}' (a whole number followed by h, d, w, m or y, e.g. 12h)`);
  return n;
}

function markDefault(state: State, ctx: Ctx): void {
  if (!state.defaultListenerUsed) {
    state.defaultListener.file = ctx.file;
    state.defaultListener.line = ctx.line;
  }
  state.defaultListenerUsed = true;
}

/** Settings before the first `listener` line configure Mosquitto's default listener. */
function listenerFor(state: State, ctx: Ctx): ListenerConfig {
  if (state.current) return state.current;
  markDefault(state, ctx);
  return state.defaultListener;
}

/**
 * Where allow_anonymous, password_file and acl_file go: with per_listener_settings true the
 * listener being configured (before the first `listener`, Mosquitto's default one); otherwise
 * undefined, the whole broker.
 */
function securityListener(state: State): ListenerSecurityConfig | undefined {
  state.securitySeen = true;
  if (state.perListenerSettings?.value !== true) return undefined;
  const l = state.current ?? state.defaultListener;
  l.security ??= {};
  return l.security;
}

type Handler = (state: State, ctx: Ctx, args: string[]) => void;

const HANDLERS: Record<string, Handler> = {
  listener(state, ctx, args) {
    if (args.length === 0 || args.length > 2) fail(ctx, 'expected: listener PORT [BIND_ADDRESS]');
    const port = int(ctx, [args[0]], 0, 65_535);
    const host = args[1];
    if (host?.startsWith('/')) fail(ctx, 'unix sockets are not supported');
    const l: ListenerConfig = {
      port,
      host,
      protocol: 'mqtt',
      requireCertificate: false,
      useIdentityAsUsername: false,
      useSubjectAsUsername: false,
      useUsernameAsClientid: false,
      statusPage: false,
      file: ctx.file,
      line: ctx.line,
    };
    for (const other of state.cfg.listeners) {
      if (port !== 0 && other.port === port && other.host === host) {
        fail(ctx, `duplicate listener (port ${port} is already configured at ${other.file}:${other.line})`);
      }
    }
    state.cfg.listeners.push(l);
    state.current = l;
  },
  port(state, ctx, args) {
    state.defaultListener.port = int(ctx, args, 1, 65_535);
    markDefault(state, ctx);
    warn(state, ctx, "deprecated in Mosquitto 2; prefer 'listener PORT'");
  },
  bind_address(state, ctx, args) {
    state.defaultListener.host = one(ctx, args, 'an address');
    markDefault(state, ctx);
    warn(state, ctx, "deprecated in Mosquitto 2; prefer 'listener PORT ADDRESS'");
  },
  protocol(state, ctx, args) {
    const v = one(ctx, args, 'mqtt or websockets');
    if (v !== 'mqtt' && v !== 'websockets')
      fail(ctx, `invalid value '${v.slice(0, 40)}' (expected mqtt or websockets)`);
    listenerFor(state, ctx).protocol = v;
  },
  certfile(state, ctx, args) {
    listenerFor(state, ctx).certfile = path(ctx, args);
  },
  keyfile(state, ctx, args) {
    listenerFor(state, ctx).keyfile = path(ctx, args);
  },
  cafile(state, ctx, args) {
    listenerFor(state, ctx).cafile = path(ctx, args);
  },
  require_certificate(state, ctx, args) {
    listenerFor(state, ctx).requireCertificate = bool(ctx, args);
  },
  use_identity_as_username(state, ctx, args) {
    listenerFor(state, ctx).useIdentityAsUsername = bool(ctx, args);
  },
  use_subject_as_username(state, ctx, args) {
    listenerFor(state, ctx).useSubjectAsUsername = bool(ctx, args);
  },
  use_username_as_clientid(state, ctx, args) {
    listenerFor(state, ctx).useUsernameAsClientid = bool(ctx, args);
  },
  http_dir(state, ctx, args) {
    listenerFor(state, ctx).httpDir = path(ctx, args);
  },
  status_page(state, ctx, args) {
    listenerFor(state, ctx).statusPage = bool(ctx, args);
  },
  metrics_listener(state, ctx, args) {
    if (args.length === 0 || args.length > 2) fail(ctx, 'expected: metrics_listener PORT [BIND_ADDRESS]');
    const prev = state.cfg.metricsListener;
    if (prev !== undefined) fail(ctx, `metrics_listener is already set at ${prev.file}:${prev.line}`);
    const port = int(ctx, [args[0]], 0, 65_535);
    const host = args[1];
    if (host?.startsWith('/')) fail(ctx, 'unix sockets are not supported');
    state.cfg.metricsListener = { port, host, file: ctx.file, line: ctx.line };
  },
  allow_anonymous(state, ctx, args) {
    const v = bool(ctx, args);
    const l = securityListener(state);
    if (l !== undefined) l.allowAnonymous = v;
    else state.allowAnonymous = v;
  },
  per_listener_settings(state, ctx, args) {
    const value = bool(ctx, args);
    if (value && state.securitySeen)
      fail(ctx, 'per_listener_settings must be set before any other security settings (as in Mosquitto)');
    state.perListenerSettings = { value, file: ctx.file, line: ctx.line };
  },
  password_file(state, ctx, args) {
    const file = path(ctx, args);
    const l = securityListener(state);
    // Mosquitto makes its default listener (port 1883) for a password_file given before any
    // `listener` under per_listener_settings; allow_anonymous and acl_file alone do not.
    if (l !== undefined && state.current === undefined) markDefault(state, ctx);
    if (l !== undefined) l.passwordFile = file;
    else state.cfg.passwordFile = file;
  },
  acl_file(state, ctx, args) {
    const file = path(ctx, args);
    const l = securityListener(state);
    if (l !== undefined) l.aclFile = file;
    else state.cfg.aclFile = file;
  },
  persistence(state, ctx, args) {
    state.cfg.persistence = bool(ctx, args);
  },
  persistence_location(state, ctx, args) {
    state.cfg.persistenceLocation = path(ctx, args);
  },
  autosave_interval(state, ctx, args) {
    state.cfg.autosaveIntervalSeconds = int(ctx, args, 0, 2_147_483_647);
  },
  persistence_commit_window(state, ctx, args) {
    state.cfg.persistenceCommitWindowMs = int(ctx, args, 0, 600_000);
  },
  max_inflight_messages(state, ctx, args) {
    state.cfg.maxInflightMessages = int(ctx, args, 0, 65_535);
  },
  max_queued_messages(state, ctx, args) {
    state.cfg.maxQueuedMessages = int(ctx, args, 0, 2_147_483_647);
  },
  max_queued_bytes(state, ctx, args) {
    state.cfg.maxQueuedBytes = int(ctx, args, 0, Number.MAX_SAFE_INTEGER);
  },
  message_size_limit(state, ctx, args) {
    state.cfg.messageSizeLimit = int(ctx, args, 0, MAX_PAYLOAD);
  },
  max_packet_size(state, ctx, args) {
    const n = int(ctx, args, 0, MAX_PAYLOAD + 5);
    if (n !== 0 && n < 20) fail(ctx, `value ${n} is too small (at least 20 bytes, or 0 for no limit)`);
    state.cfg.maxPacketSize = n;
  },
  max_unauthenticated_packet_size(state, ctx, args) {
    const n = int(ctx, args, 0, MAX_PAYLOAD + 5);
    if (n !== 0 && n < 20) fail(ctx, `value ${n} is too small (at least 20 bytes, or 0 for max_packet_size)`);
    state.cfg.maxUnauthenticatedPacketSize = n;
  },
  max_unauthenticated_bytes(state, ctx, args) {
    const n = int(ctx, args, 0, Number.MAX_SAFE_INTEGER);
    if (n !== 0 && n < 1024) fail(ctx, `value ${n} is too small (at least 1024 bytes, or 0 for no limit)`);
    state.cfg.maxUnauthenticatedBytes = n;
  },
  memory_limit(state, ctx, args) {
    state.cfg.memoryLimit = int(ctx, args, 0, Number.MAX_SAFE_INTEGER);
  },
  persistent_client_expiration(state, ctx, args) {
    state.cfg.persistentClientExpiration = duration(ctx, args);
  },
  max_topic_alias_out(state, ctx, args) {
    state.cfg.maxTopicAliasOut = int(ctx, args, 0, MAX_OUT_ALIAS_LIMIT);
  },
  max_topic_levels(state, ctx, args) {
    state.cfg.maxTopicLevels = int(ctx, args, 0, 65_536);
  },
  max_connections(state, ctx, args) {
    const n = int(ctx, args, -1, 2_147_483_647);
    if (n === 0) fail(ctx, 'value 0 would refuse every client (use -1 for no limit)');
    const prev = state.maxConnectionsAt;
    if (prev && state.cfg.maxConnections !== n) {
      fail(
        ctx,
        `broker-lite applies max_connections to the whole broker; it was already set at ${prev.file}:${prev.line}`,
      );
    }
    state.cfg.maxConnections = n;
    state.maxConnectionsAt = { file: ctx.file, line: ctx.line };
  },
  max_keepalive(state, ctx, args) {
    const n = int(ctx, args, 0, 65_535);
    if (n < 10) warn(state, ctx, 'values below 10 seconds are not recommended (Mosquitto says the same)');
    state.cfg.maxKeepalive = n;
  },
  retain_available(state, ctx, args) {
    state.cfg.retainAvailable = bool(ctx, args);
  },
  sys_interval(state, ctx, args) {
    state.cfg.sysInterval = int(ctx, args, 0, 2_147_483_647);
  },
  connection_messages(state, ctx, args) {
    state.cfg.connectionMessages = bool(ctx, args);
  },
  log_timestamp(state, ctx, args) {
    state.cfg.logTimestamp = bool(ctx, args);
  },
  log_timestamp_format(state, ctx, args) {
    // The rest of the line, as Mosquitto reads it: a format may hold spaces.
    if (args.length === 0) fail(ctx, 'missing value (expected a strftime format, e.g. %Y-%m-%dT%H:%M:%S)');
    const format = args.join(' ');
    try {
      compileStrftime(format);
    } catch (err) {
      if (err instanceof StrftimeError) fail(ctx, err.message);
      throw err;
    }
    state.cfg.logTimestampFormat = format;
  },
  log_facility(state, ctx, args) {
    state.cfg.logFacility = int(ctx, args, 0, 7);
  },
  log_syslog_socket(state, ctx, args) {
    state.cfg.logSyslogSocket = path(ctx, args);
  },
  log_dest(state, ctx, args) {
    if (args.length === 0)
      fail(ctx, 'missing value (expected stdout, stderr, file PATH, syslog, topic or none)');
    const kind = args[0];
    const rest = args.slice(1);
    state.logDestSeen = true;
    if (kind === 'file') {
      if (rest.length === 0) fail(ctx, "'log_dest file' needs a path");
      if (state.cfg.logDest.some((d) => d.kind === 'file')) fail(ctx, 'only one log_dest file may be given');
      state.cfg.logDest.push({
        kind: 'file',
        path: resolve(ctx.dir, rest.join(' ')),
        file: ctx.file,
        line: ctx.line,
      });
      return;
    }
    if (rest.length > 0) fail(ctx, `unexpected '${rest.join(' ').slice(0, 40)}' after '${kind}'`);
    if (kind === 'stdout' || kind === 'stderr') {
      if (!state.cfg.logDest.some((d) => d.kind === kind)) state.cfg.logDest.push({ kind });
    } else if (kind === 'none') {
      state.cfg.logDest.length = 0;
    } else if (kind === 'syslog') {
      if (!state.cfg.logDest.some((d) => d.kind === kind))
        state.cfg.logDest.push({ kind, file: ctx.file, line: ctx.line });
    } else if (kind === 'topic') {
      if (!state.cfg.logDest.some((d) => d.kind === kind)) state.cfg.logDest.push({ kind });
    } else if (kind === 'dlt') {
      warn(state, ctx, `log destination '${kind}' is not supported; ignored`);
    } else {
      fail(
        ctx,
        `invalid destination '${kind.slice(0, 40)}' (expected stdout, stderr, file PATH, syslog, topic or none)`,
      );
    }
  },
  log_type(state, ctx, args) {
    const v = one(ctx, args, `one of ${LOG_TYPES.join(', ')}, all or none`);
    // The first log_type replaces Mosquitto's default set; later ones add to it.
    if (!state.logTypeSeen) state.cfg.logTypes = [];
    state.logTypeSeen = true;
    const add = (t: LogType): void => {
      if (!state.cfg.logTypes.includes(t)) state.cfg.logTypes.push(t);
    };
    if (v === 'all') for (const t of LOG_TYPES) add(t);
    else if (v === 'none') state.cfg.logTypes = [];
    else if ((LOG_TYPES as readonly string[]).includes(v)) add(v as LogType);
    else
      fail(ctx, `invalid value '${v.slice(0, 40)}' (expected one of ${LOG_TYPES.join(', ')}, all or none)`);
  },
  pid_file(state, ctx, args) {
    state.cfg.pidFile = path(ctx, args);
  },
  include_dir(state, ctx, args) {
    if (ctx.dir !== state.mainDir || ctx.file !== state.cfg.file) {
      fail(ctx, 'include_dir may only be used in the main configuration file');
    }
    const dir = path(ctx, args);
    let names: string[];
    try {
      names = readdirSync(dir).filter((n) => n.endsWith('.conf'));
    } catch (err) {
      fail(ctx, `cannot read directory ${dir} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    names.sort(mosquittoOrder);
    for (const name of names) {
      const file = resolve(dir, name);
      if (file === state.cfg.file) fail(ctx, `directory ${dir} holds the main configuration file`);
      if (++state.includedFiles > MAX_INCLUDED_FILES)
        fail(ctx, `more than ${MAX_INCLUDED_FILES} included files`);
      // Relative paths in an included file are relative to that file, like in the main one.
      parseFileInto(state, file, ctx);
    }
  },
};

/** Mosquitto's include order: alphabetical, an upper-case letter before its lower case. */
export function mosquittoOrder(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[i];
    const y = b[i];
    if (x === y) continue;
    const lx = x.toLowerCase();
    const ly = y.toLowerCase();
    if (lx !== ly) return lx < ly ? -1 : 1;
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

function suggestion(key: string): string {
  const best = nearest(key, Object.keys(HANDLERS));
  return best ? ` (did you mean '${best}'?)` : '';
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function readConfigBytes(file: string, from: Ctx | undefined): Uint8Array {
  const fromCtx: Ctx = from ?? { file, line: 0, key: '', dir: dirname(file) };
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO named like a config file must not hang start-up (fstat refuses it next).
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    fail(fromCtx, `cannot open config file ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) fail(fromCtx, `${file} is not a regular file`);
    if (st.size > MAX_CONFIG_BYTES) fail(fromCtx, `${file} is larger than ${MAX_CONFIG_BYTES} bytes`);
    const buf = new Uint8Array(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off);
  } finally {
    closeSync(fd);
  }
}

function parseFileInto(state: State, file: string, from: Ctx | undefined): void {
  state.cfg.files.push(file);
  parseTextInto(state, readConfigBytes(file, from), file);
}

function parseTextInto(state: State, bytes: Uint8Array, file: string): void {
  const dir = dirname(file);
  let start = 0;
  let lineNo = 0;
  while (start <= bytes.length) {
    let end = bytes.indexOf(0x0a, start);
    if (end < 0) end = bytes.length;
    lineNo++;
    const ctx: Ctx = { file, line: lineNo, key: '', dir };
    if (end - start > MAX_LINE_CHARS) fail(ctx, `line is longer than ${MAX_LINE_CHARS} bytes`);
    const raw = bytes.subarray(start, end);
    start = end + 1;
    if (raw.includes(0)) fail(ctx, 'binary data (a NUL byte) in a configuration file');
    let text: string;
    try {
      text = utf8.decode(raw);
    } catch {
      fail(ctx, 'the line is not valid UTF-8');
    }
    const line = text.trim();
    if (line === '' || line.startsWith('#')) continue;
    const words = line.split(/\s+/);
    const key = words[0];
    ctx.key = key.slice(0, 64);
    applyKey(state, ctx, key, words.slice(1));
  }
}

function applyKey(state: State, ctx: Ctx, key: string, args: string[]): void {
  const handler = Object.hasOwn(HANDLERS, key) ? HANDLERS[key] : undefined;
  if (handler) {
    handler(state, ctx, args);
    return;
  }
  if (applyBridgeKey(state.bridge, ctx, key, args)) return;
  if (Object.hasOwn(IGNORED, key)) {
    warn(state, ctx, `ignored: ${IGNORED[key]}`);
    return;
  }
  if (Object.hasOwn(UNSUPPORTED, key)) fail(ctx, UNSUPPORTED[key]);
  if (key.startsWith('auth_opt_') || key.startsWith('plugin_opt_')) fail(ctx, 'plugins are not supported');
  const printable = key.replace(/[^\x20-\x7e]/g, '?').slice(0, 64);
  fail({ ...ctx, key: printable }, `unknown configuration key${suggestion(key)}`);
}

function freshState(file: string | undefined, cwd: string): State {
  const main = file === undefined ? undefined : resolve(cwd, file);
  const mainDir = main === undefined ? cwd : dirname(main);
  const d = DEFAULT_BROKER_OPTIONS;
  const state: State = {
    cfg: {
      file: main,
      files: [],
      listeners: [],
      localOnly: false,
      allowAnonymous: false,
      perListenerSettings: false,
      persistence: false,
      persistenceLocation: mainDir,
      autosaveIntervalSeconds: d.autosaveIntervalSeconds,
      persistenceCommitWindowMs: d.persistenceCommitWindowMs ?? 0,
      maxInflightMessages: d.maxInflightMessages,
      maxQueuedMessages: d.maxQueuedMessages,
      maxQueuedBytes: d.maxQueuedBytes,
      messageSizeLimit: d.messageSizeLimit,
      maxPacketSize: 0,
      maxUnauthenticatedPacketSize: d.maxUnauthenticatedPacketSize,
      maxUnauthenticatedBytes: d.maxUnauthenticatedBytes,
      maxTopicLevels: d.maxTopicLevels,
      memoryLimit: d.memoryLimit,
      maxTopicAliasOut: OUT_ALIAS_LIMIT,
      persistentClientExpiration: 0,
      maxConnections: d.maxConnections,
      maxKeepalive: d.maxKeepalive,
      retainAvailable: d.retainAvailable,
      sysInterval: d.sysInterval,
      connectionMessages: true,
      logDest: [],
      logTypes: [...DEFAULT_LOG_TYPES],
      logTimestamp: true,
      logSyslogSocket: DEFAULT_SYSLOG_SOCKET,
      bridges: [],
      warnings: [],
    },
    mainDir,
    defaultListener: {
      port: 1883,
      protocol: 'mqtt',
      requireCertificate: false,
      useIdentityAsUsername: false,
      useSubjectAsUsername: false,
      useUsernameAsClientid: false,
      statusPage: false,
      file: main ?? '(command line)',
      line: 0,
    },
    defaultListenerUsed: false,
    current: undefined,
    perListenerSettings: undefined,
    securitySeen: false,
    logTypeSeen: false,
    logDestSeen: false,
    includedFiles: 0,
    bridge: { bridges: [], seen: new Set(), warn: () => {} },
  };
  state.bridge.warn = (ctx, message) =>
    state.cfg.warnings.push({ file: ctx.file, line: ctx.line, key: ctx.key, message });
  return state;
}

function checkListener(l: ListenerConfig): void {
  const ctx: Ctx = { file: l.file, line: l.line, key: 'listener', dir: '' };
  const tls = l.certfile !== undefined || l.keyfile !== undefined;
  if (tls && (l.certfile === undefined || l.keyfile === undefined)) {
    fail(ctx, `the listener on port ${l.port} needs both certfile and keyfile for TLS`);
  }
  if (l.cafile !== undefined && !tls)
    fail(ctx, `the listener on port ${l.port} has a cafile but no certfile/keyfile`);
  if (l.requireCertificate && !tls) fail(ctx, `require_certificate on port ${l.port} needs a TLS listener`);
  if (l.requireCertificate && l.cafile === undefined) {
    fail(ctx, `require_certificate on port ${l.port} needs a cafile to verify client certificates with`);
  }
  if (l.useIdentityAsUsername && !l.requireCertificate) {
    fail(ctx, `use_identity_as_username on port ${l.port} needs require_certificate true`);
  }
  if (l.useSubjectAsUsername && !l.requireCertificate) {
    fail(ctx, `use_subject_as_username on port ${l.port} needs require_certificate true`);
  }
  if (l.statusPage && l.protocol !== 'websockets')
    fail(ctx, `status_page on port ${l.port} needs protocol websockets (the page connects back over it)`);
  if (l.statusPage && l.httpDir !== undefined)
    fail(
      ctx,
      `the listener on port ${l.port} has both http_dir and status_page: both serve /; give the status page a websockets listener of its own`,
    );
}

function finish(state: State, overrides: ConfigOverrides): BrokerConfig {
  const cfg = state.cfg;
  if (state.defaultListenerUsed) cfg.listeners.unshift(state.defaultListener);
  const configured = cfg.listeners.length > 0;
  if (overrides.ports && overrides.ports.length > 0) {
    if (configured) {
      cfg.warnings.push({
        file: cfg.file ?? '(command line)',
        line: 0,
        key: '-p',
        message: 'ignored because the configuration defines listeners (as in Mosquitto 2)',
      });
    } else {
      for (const port of overrides.ports) {
        cfg.listeners.push({
          port,
          host: '127.0.0.1',
          protocol: 'mqtt',
          requireCertificate: false,
          useIdentityAsUsername: false,
          useSubjectAsUsername: false,
          useUsernameAsClientid: false,
          statusPage: false,
          file: '(command line)',
          line: 0,
        });
      }
      cfg.localOnly = true;
    }
  }
  if (cfg.listeners.length === 0) {
    cfg.localOnly = true;
    cfg.listeners.push({
      port: 1883,
      host: '127.0.0.1',
      protocol: 'mqtt',
      requireCertificate: false,
      useIdentityAsUsername: false,
      useSubjectAsUsername: false,
      useUsernameAsClientid: false,
      statusPage: false,
      file: '(default)',
      line: 0,
    });
  }
  for (const l of cfg.listeners) {
    checkListener(l);
    // Mosquitto serves http_dir on websockets listeners only and ignores it elsewhere.
    if (l.httpDir !== undefined && l.protocol !== 'websockets')
      cfg.warnings.push({
        file: l.file,
        line: l.line,
        key: 'http_dir',
        message: `ignored: the listener on port ${l.port} is not protocol websockets (as in Mosquitto)`,
      });
  }
  const m = cfg.metricsListener;
  if (m !== undefined)
    for (const l of cfg.listeners)
      if (
        m.port !== 0 &&
        l.port === m.port &&
        (l.host === m.host || l.host === undefined || m.host === undefined)
      )
        throw new ConfigError(
          m.file,
          m.line,
          'metrics_listener',
          `port ${m.port} is already a listener (${l.file}:${l.line})`,
        );
  checkBridges(state.bridge.bridges);
  cfg.bridges = state.bridge.bridges;
  const noLogin = 'anonymous clients are refused and there is no password_file: no client can connect';
  cfg.perListenerSettings = state.perListenerSettings?.value === true;
  if (cfg.perListenerSettings) {
    const d = state.defaultListener;
    if (!state.defaultListenerUsed && d.security !== undefined)
      cfg.warnings.push({
        file: d.file,
        line: 0,
        key: 'per_listener_settings',
        message:
          'allow_anonymous or acl_file before the first listener applies to the default listener (port 1883), which this file does not configure: ignored (as in Mosquitto)',
      });
    for (const l of cfg.listeners) {
      const sec = (l.security ??= {});
      // Mosquitto 2: each listener refuses anonymous clients unless it allows them.
      sec.allowAnonymous ??= cfg.localOnly;
      if (
        !sec.allowAnonymous &&
        sec.passwordFile === undefined &&
        !(l.useIdentityAsUsername || l.useSubjectAsUsername)
      )
        cfg.warnings.push({
          file: l.file,
          line: l.line,
          key: 'allow_anonymous',
          message: `listener on port ${l.port}: ${noLogin}`,
        });
    }
    // What has no listener of its own (a will or a session restored from disk) answers to the
    // anonymous rule of the strictest listener; the ACLs are combined by the broker.
    cfg.allowAnonymous = cfg.listeners.every((l) => l.security?.allowAnonymous === true);
  } else {
    // Mosquitto 2: anonymous clients are refused once a listener is configured, unless allowed.
    cfg.allowAnonymous = state.allowAnonymous ?? cfg.localOnly;
    if (
      !cfg.allowAnonymous &&
      cfg.passwordFile === undefined &&
      !cfg.listeners.some((l) => l.useIdentityAsUsername || l.useSubjectAsUsername)
    ) {
      cfg.warnings.push({
        file: cfg.file ?? '(command line)',
        line: 0,
        key: 'allow_anonymous',
        message: noLogin,
      });
    }
  }
  if (overrides.verbose) cfg.logTypes = [...LOG_TYPES];
  if (!state.logDestSeen) cfg.logDest.push({ kind: 'stderr' });
  return cfg;
}

/** Parses a config file (and its include_dir files). Throws ConfigError. */
export function loadConfig(file: string, overrides: ConfigOverrides = {}, cwd = process.cwd()): BrokerConfig {
  const state = freshState(file, cwd);
  parseFileInto(state, state.cfg.file!, undefined);
  return finish(state, overrides);
}

/** Parses config text as if read from `file` (which names it in errors and anchors relative paths). */
export function parseConfig(text: string, file: string, overrides: ConfigOverrides = {}): BrokerConfig {
  const state = freshState(file, process.cwd());
  state.cfg.files.push(state.cfg.file!);
  parseTextInto(state, new TextEncoder().encode(text), state.cfg.file!);
  return finish(state, overrides);
}

/** The configuration without a file: Mosquitto 2's local-only defaults. */
export function defaultConfig(overrides: ConfigOverrides = {}): BrokerConfig {
  return finish(freshState(undefined, process.cwd()), overrides);
}

/** True when `path` exists and is a directory. */
export function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}
