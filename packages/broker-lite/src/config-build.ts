import { createPrivateKey, X509Certificate } from 'node:crypto';
import { type Stats, statSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { AclFile } from './acl.ts';
import type { BrokerConfig, ListenerConfig } from './config.ts';
import { type BridgeConfig, describeBridge } from './config-bridge.ts';
import { ConfigError } from './config-error.ts';
import type {
  AccessControl,
  Authenticator,
  BrokerOptions,
  ListenerOptions,
  ListenerSecurity,
  LogSink,
} from './options.ts';
import { DEFAULT_BROKER_OPTIONS } from './options.ts';
import { createAuthenticator, PasswordFile, readBounded } from './passwd.ts';

/** The password and ACL files as loaded; SIGHUP loads them again. */
export interface Security {
  passwords?: PasswordFile;
  acl?: AclFile;
  authenticator: Authenticator;
  accessControl?: AccessControl;
  /** per_listener_settings: each listener's, in `cfg.listeners` order. */
  listeners?: ListenerSecurityLoaded[];
}

export interface ListenerSecurityLoaded {
  passwords?: PasswordFile;
  acl?: AclFile;
  /** What the broker uses (ListenerOptions.security). */
  live: ListenerSecurity;
}

const MAX_PEM_BYTES = 1024 * 1024;

/** Loads password_file and acl_file. Throws ConfigError naming file:line; nothing is half-loaded. */
export async function loadSecurity(cfg: BrokerConfig): Promise<Security> {
  if (cfg.perListenerSettings) return loadListenerSecurity(cfg);
  const passwords = cfg.passwordFile === undefined ? undefined : await PasswordFile.load(cfg.passwordFile);
  const acl = cfg.aclFile === undefined ? undefined : await AclFile.load(cfg.aclFile);
  return {
    passwords,
    acl,
    authenticator: createAuthenticator({ allowAnonymous: cfg.allowAnonymous, passwords }),
    accessControl: acl,
  };
}

/**
 * per_listener_settings: each listener's files (a file two listeners name is read once). What
 * has no listener (a will or session restored from disk) gets every listener's ACL together:
 * allowed only where each of them allows it.
 */
async function loadListenerSecurity(cfg: BrokerConfig): Promise<Security> {
  const passwordFiles = new Map<string, PasswordFile>();
  const aclFiles = new Map<string, AclFile>();
  const listeners: ListenerSecurityLoaded[] = [];
  for (const l of cfg.listeners) {
    const s = l.security ?? {};
    let passwords: PasswordFile | undefined;
    if (s.passwordFile !== undefined) {
      passwords = passwordFiles.get(s.passwordFile) ?? (await PasswordFile.load(s.passwordFile));
      passwordFiles.set(s.passwordFile, passwords);
    }
    let acl: AclFile | undefined;
    if (s.aclFile !== undefined) {
      acl = aclFiles.get(s.aclFile) ?? (await AclFile.load(s.aclFile));
      aclFiles.set(s.aclFile, acl);
    }
    const allowAnonymous = s.allowAnonymous === true;
    listeners.push({
      passwords,
      acl,
      live: {
        allowAnonymous,
        authenticator: createAuthenticator({ allowAnonymous, passwords }),
        accessControl: acl,
      },
    });
  }
  const acls = listeners.flatMap((x) => (x.acl === undefined ? [] : [x.acl]));
  const accessControl: AccessControl | undefined =
    acls.length === 0
      ? undefined
      : { allowed: (access, client, topic) => acls.every((a) => a.allowed(access, client, topic)) };
  return {
    listeners,
    authenticator: createAuthenticator({ allowAnonymous: cfg.allowAnonymous }),
    accessControl,
  };
}

/**
 * A listener's certfile, keyfile and cafile, read and checked together (at start, and again on
 * SIGHUP for a renewal); undefined for a listener without TLS. Throws ConfigError naming the
 * listener and the file.
 */
export async function loadListenerTls(
  l: ListenerConfig,
): Promise<{ cert: string; key: string; ca?: string } | undefined> {
  if (l.certfile === undefined || l.keyfile === undefined) return undefined;
  const cert = await readBounded(l.certfile, 'certfile', MAX_PEM_BYTES);
  const key = await readBounded(l.keyfile, 'keyfile', MAX_PEM_BYTES);
  const ca = l.cafile === undefined ? undefined : await readBounded(l.cafile, 'cafile', MAX_PEM_BYTES);
  try {
    // Fails now, naming the listener, rather than on the first client's handshake. Node takes
    // an empty cert or key (a file read while a renewal rewrites it) without a word and then
    // fails every handshake: each must be there, parse, and belong to the other.
    const x509 = new X509Certificate(cert);
    if (!x509.checkPrivateKey(createPrivateKey(key)))
      throw new Error('the key does not match the certificate');
    if (ca !== undefined && !ca.includes('-----BEGIN CERTIFICATE-----'))
      throw new Error(`cafile ${l.cafile} holds no PEM certificate`);
    createSecureContext({ cert, key, ca });
  } catch (err) {
    throw new ConfigError(
      l.file,
      l.line,
      'listener',
      `TLS files for port ${l.port}: ${(err as Error).message}`,
    );
  }
  return ca === undefined ? { cert, key } : { cert, key, ca };
}

async function buildListener(l: ListenerConfig): Promise<ListenerOptions> {
  const out: ListenerOptions = { port: l.port, protocol: l.protocol };
  if (l.host !== undefined) out.host = l.host;
  if (l.useUsernameAsClientid) out.useUsernameAsClientid = true;
  if (l.statusPage) out.statusPage = true;
  if (l.httpDir !== undefined && l.protocol === 'websockets') out.httpDir = checkHttpDir(l);
  const files = await loadListenerTls(l);
  if (files === undefined) return out;
  const { cert, key, ca } = files;
  out.tls = {
    cert,
    key,
    requireCertificate: l.requireCertificate,
    useIdentityAsUsername: l.useIdentityAsUsername,
    useSubjectAsUsername: l.useSubjectAsUsername,
  };
  if (ca !== undefined) out.tls.ca = ca;
  return out;
}

/** http_dir must be a directory the broker can read: said at start-up, naming the listener. */
function checkHttpDir(l: ListenerConfig): string {
  const dir = l.httpDir as string;
  let st: Stats;
  try {
    st = statSync(dir);
  } catch (err) {
    throw new ConfigError(
      l.file,
      l.line,
      'http_dir',
      `cannot open http_dir ${dir} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  if (!st.isDirectory())
    throw new ConfigError(l.file, l.line, 'http_dir', `http_dir ${dir} is not a directory`);
  return dir;
}

/** A bridge's TLS files are read and checked at start-up, naming the bridge, not at its first attempt. */
async function checkBridgeTls(b: BridgeConfig): Promise<void> {
  if (b.cafile === undefined) return;
  // Errors name the bridge's `connection` line, where the operator looks.
  const read = async (file: string, key: string): Promise<string> => {
    try {
      return await readBounded(file, key, MAX_PEM_BYTES);
    } catch (err) {
      const why = err instanceof ConfigError ? err.problem : (err as Error).message;
      throw new ConfigError(b.file, b.line, 'connection', `bridge '${b.name}': ${key} ${file}: ${why}`);
    }
  };
  const ca = await read(b.cafile, 'bridge_cafile');
  const cert = b.certfile === undefined ? undefined : await read(b.certfile, 'bridge_certfile');
  const key = b.keyfile === undefined ? undefined : await read(b.keyfile, 'bridge_keyfile');
  // Node skips text that is not PEM in `ca` silently: an empty trust store would refuse every remote.
  if (!ca.includes('-----BEGIN CERTIFICATE-----'))
    throw new ConfigError(
      b.file,
      b.line,
      'connection',
      `bridge '${b.name}': bridge_cafile ${b.cafile} holds no PEM certificate`,
    );
  try {
    createSecureContext({ ca, cert, key });
  } catch (err) {
    throw new ConfigError(
      b.file,
      b.line,
      'connection',
      `TLS files of bridge '${b.name}': ${(err as Error).message}`,
    );
  }
}

/** Reads everything a config names and makes the core's options. Throws ConfigError. */
export async function buildBrokerOptions(
  cfg: BrokerConfig,
  logger: LogSink,
  security?: Security,
): Promise<{ options: BrokerOptions; security: Security }> {
  const sec = security ?? (await loadSecurity(cfg));
  const listeners: ListenerOptions[] = [];
  for (const [i, l] of cfg.listeners.entries()) {
    const out = await buildListener(l);
    const own = sec.listeners?.[i];
    if (own !== undefined) out.security = own.live;
    listeners.push(out);
  }
  for (const b of cfg.bridges) await checkBridgeTls(b);
  const options: BrokerOptions = {
    ...DEFAULT_BROKER_OPTIONS,
    listeners,
    allowAnonymous: cfg.allowAnonymous,
    authenticator: sec.authenticator,
    accessControl: sec.accessControl,
    persistenceDir: cfg.persistence ? cfg.persistenceLocation : undefined,
    autosaveIntervalSeconds: cfg.autosaveIntervalSeconds,
    persistenceCommitWindowMs: cfg.persistenceCommitWindowMs,
    maxInflightMessages: cfg.maxInflightMessages,
    maxQueuedMessages: cfg.maxQueuedMessages,
    maxQueuedBytes: cfg.maxQueuedBytes,
    messageSizeLimit: cfg.messageSizeLimit,
    maxConnections: cfg.maxConnections,
    maxKeepalive: cfg.maxKeepalive,
    retainAvailable: cfg.retainAvailable,
    sysInterval: cfg.sysInterval,
    maxPacketSize: cfg.maxPacketSize,
    maxUnauthenticatedPacketSize: cfg.maxUnauthenticatedPacketSize,
    maxUnauthenticatedBytes: cfg.maxUnauthenticatedBytes,
    maxTopicLevels: cfg.maxTopicLevels,
    memoryLimit: cfg.memoryLimit,
    maxTopicAliasOut: cfg.maxTopicAliasOut,
    persistentClientExpiration: cfg.persistentClientExpiration,
    connectionMessages: cfg.connectionMessages,
    logger,
  };
  const m = cfg.metricsListener;
  if (m !== undefined)
    options.metricsListener = m.host === undefined ? { port: m.port } : { port: m.port, host: m.host };
  return { options, security: sec };
}

/** `broker-lite check`: the effective settings, one `key value` per line, in mosquitto.conf terms. */
export function describeConfig(cfg: BrokerConfig, security?: Security): string {
  const out: string[] = [];
  const users = (p: PasswordFile | undefined): string => (p ? ` (${p.users.size} users)` : '');
  const rules = (acl: AclFile | undefined): string =>
    acl
      ? ` (${acl.rules.anonymous.length} anonymous rules, ${acl.rules.users.size} users, ${acl.rules.patterns.length} patterns)`
      : '';
  out.push(`# configuration: ${cfg.file ?? '(none: defaults)'}`);
  if (cfg.files.length > 1) out.push(`# included: ${cfg.files.slice(1).join(', ')}`);
  for (const l of cfg.listeners) {
    const where = l.line > 0 ? `  # ${l.file}:${l.line}` : `  # ${l.file}`;
    out.push(`listener ${l.port} ${l.host ?? '(all interfaces)'}${where}`);
    out.push(`  protocol ${l.protocol}${l.certfile ? ' (TLS)' : ''}`);
    if (l.certfile) {
      out.push(`  certfile ${l.certfile}`);
      out.push(`  keyfile ${l.keyfile}`);
      if (l.cafile) out.push(`  cafile ${l.cafile}`);
      out.push(`  require_certificate ${l.requireCertificate}`);
      out.push(`  use_identity_as_username ${l.useIdentityAsUsername}`);
      out.push(`  use_subject_as_username ${l.useSubjectAsUsername}`);
    }
    out.push(`  use_username_as_clientid ${l.useUsernameAsClientid}`);
    if (l.httpDir !== undefined)
      out.push(`  http_dir ${l.httpDir}${l.protocol === 'websockets' ? '' : ' (ignored: not websockets)'}`);
    if (l.statusPage) out.push('  status_page true');
    const own = l.security;
    if (cfg.perListenerSettings && own !== undefined) {
      const loaded = security?.listeners?.[cfg.listeners.indexOf(l)];
      out.push(`  allow_anonymous ${own.allowAnonymous === true}`);
      out.push(`  password_file ${own.passwordFile ?? '(none)'}${users(loaded?.passwords)}`);
      out.push(
        `  acl_file ${own.aclFile ?? '(none: every client of this listener may use every topic)'}${rules(loaded?.acl)}`,
      );
    }
  }
  if (cfg.perListenerSettings) out.push('per_listener_settings true');
  if (cfg.localOnly) out.push('# no listener configured: local connections only (as in Mosquitto 2)');
  if (!cfg.perListenerSettings) {
    out.push(`allow_anonymous ${cfg.allowAnonymous}`);
    out.push(`password_file ${cfg.passwordFile ?? '(none)'}${users(security?.passwords)}`);
    out.push(`acl_file ${cfg.aclFile ?? '(none: every client may use every topic)'}${rules(security?.acl)}`);
  }
  out.push(`persistence ${cfg.persistence}`);
  if (cfg.persistence) out.push(`persistence_location ${cfg.persistenceLocation}`);
  out.push(`autosave_interval ${cfg.autosaveIntervalSeconds}`);
  out.push(
    `persistent_client_expiration ${cfg.persistentClientExpiration > 0 ? `${cfg.persistentClientExpiration} seconds` : 'none'}`,
  );
  out.push(`persistence_commit_window ${cfg.persistenceCommitWindowMs}`);
  out.push(`max_inflight_messages ${cfg.maxInflightMessages}`);
  out.push(`max_queued_messages ${cfg.maxQueuedMessages}`);
  out.push(`max_queued_bytes ${cfg.maxQueuedBytes}`);
  out.push(`message_size_limit ${cfg.messageSizeLimit}`);
  out.push(`max_packet_size ${cfg.maxPacketSize}`);
  out.push(`max_unauthenticated_packet_size ${cfg.maxUnauthenticatedPacketSize}`);
  out.push(`max_unauthenticated_bytes ${cfg.maxUnauthenticatedBytes}`);
  out.push(`max_topic_levels ${cfg.maxTopicLevels}`);
  out.push(`memory_limit ${cfg.memoryLimit}`);
  out.push(`max_topic_alias_out ${cfg.maxTopicAliasOut}`);
  out.push(`max_connections ${cfg.maxConnections}`);
  out.push(`max_keepalive ${cfg.maxKeepalive}`);
  out.push(`retain_available ${cfg.retainAvailable}`);
  out.push(`sys_interval ${cfg.sysInterval}`);
  out.push(`connection_messages ${cfg.connectionMessages}`);
  const dests = cfg.logDest.map((d) => (d.kind === 'file' ? `file ${d.path}` : d.kind));
  out.push(`log_dest ${dests.length ? dests.join(', ') : 'none'}`);
  out.push(`log_type ${cfg.logTypes.length ? cfg.logTypes.join(', ') : 'none'}`);
  out.push(`log_timestamp ${cfg.logTimestamp}`);
  if (cfg.logTimestampFormat !== undefined) out.push(`log_timestamp_format ${cfg.logTimestampFormat}`);
  if (cfg.logDest.some((d) => d.kind === 'syslog')) {
    out.push(`log_facility ${cfg.logFacility === undefined ? 'daemon' : `local${cfg.logFacility}`}`);
    out.push(`log_syslog_socket ${cfg.logSyslogSocket}`);
  }
  if (cfg.pidFile) out.push(`pid_file ${cfg.pidFile}`);
  const m = cfg.metricsListener;
  out.push(
    m === undefined
      ? 'metrics_listener (none)'
      : `metrics_listener ${m.port} ${m.host ?? '(all interfaces)'}`,
  );
  for (const b of cfg.bridges) out.push(...describeBridge(b));
  return `${out.join('\n')}\n`;
}
