import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { BridgeOptions, Bridges } from './bridge.ts';
import { type BrokerConfig, ConfigError, defaultConfig, formatWarning, loadConfig } from './config.ts';
import { type BridgeConfig, defaultBridgeDir } from './config-bridge.ts';
import {
  buildBrokerOptions,
  describeConfig,
  loadListenerTls,
  loadSecurity,
  type Security,
} from './config-build.ts';
import {
  createLogger,
  fileDestination,
  type LogDestination,
  type LogFormat,
  type Logger,
  stdDestination,
} from './log.ts';
import { findLoggerCommand, type SyslogOptions, syslogFacility } from './log-syslog.ts';
import type { LogPublisher } from './log-topic.ts';
import type { AccessControl, Authenticator, BrokerOptions, ListenerSecurity } from './options.ts';
import { runPasswd } from './password-cli.ts';

/** Exit codes. Mosquitto exits 3 on a configuration or command-line error; so do we. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_CONFIG = 3;

/** Set by the bundles (scripts/bundle.ts), which have no package.json at ../package.json. */
declare const __BROKER_LITE_VERSION__: string | undefined;

export const VERSION = (() => {
  if (typeof __BROKER_LITE_VERSION__ === 'string') return __BROKER_LITE_VERSION__;
  try {
    const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../package.json', import.meta.url)), 'utf8'));
    return String(pkg.version);
  } catch {
    return 'unknown';
  }
})();

export const USAGE = `broker-lite ${VERSION}: a small, fast, Mosquitto-compatible MQTT broker

Usage:
  broker-lite [-c CONFIG] [-p PORT]... [-v] [-d] [--log-format text|json]
  broker-lite check [-c] CONFIG       validate CONFIG and print the effective settings
  broker-lite passwd [options] FILE USER [PASSWORD]
                                      manage a mosquitto_passwd-format file (passwd --help)

Options:
  -c, --config-file CONFIG  read a mosquitto.conf-style file. Without one the broker listens
                            on 127.0.0.1:1883 only and allows anonymous clients (Mosquitto 2).
  -p, --port PORT           listen on 127.0.0.1:PORT (repeatable). Ignored, with a warning,
                            when CONFIG defines listeners (as in Mosquitto 2).
  -v, --verbose             log every log_type (overrides log_type in CONFIG)
  -d, --daemon              not supported: run under systemd or another supervisor
      --log-format FORMAT   text (default on a terminal) or json (default otherwise)
  -h, --help                this text
      --version             print the version

Signals:
  SIGHUP           re-read CONFIG for password_file and acl_file and reload those files, and
                   the listeners' certfile, keyfile and cafile (a renewal: new connections get
                   the new certificate); an error keeps the old ones. Apply its memory_limit,
                   reopen the log file;
                   other changed settings are named in a warning and need a restart
  SIGTERM, SIGINT  close clients, save state, exit 0

Exit codes: 0 normal exit, 1 runtime failure (e.g. a port in use), 3 configuration or
command-line error (the message names FILE:LINE).

Examples:
  broker-lite                                  # local only, port 1883
  broker-lite -c /etc/mosquitto/mosquitto.conf # an existing Mosquitto configuration
  broker-lite check -c mosquitto.conf          # is this file OK? what will it do?
  broker-lite passwd -c /etc/mosquitto/passwd alice

Configuration keys: docs/broker-lite-config.md
`;

export interface CliIo {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
}

class UsageError extends Error {}

interface RunArgs {
  config?: string;
  ports: number[];
  verbose: boolean;
  daemon: boolean;
  logFormat?: LogFormat;
}

function parseRunArgs(argv: string[]): RunArgs {
  const a: RunArgs = { ports: [], verbose: false, daemon: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${arg} needs a value`);
      return v;
    };
    if (arg === '-c' || arg === '--config-file') a.config = value();
    else if (arg === '-p' || arg === '--port') {
      const v = value();
      const n = Number(v);
      if (!/^[0-9]{1,5}$/.test(v) || n < 1 || n > 65_535) throw new UsageError(`invalid port '${v}'`);
      a.ports.push(n);
    } else if (arg === '-v' || arg === '--verbose') a.verbose = true;
    else if (arg === '-d' || arg === '--daemon') a.daemon = true;
    else if (arg === '--log-format') {
      const v = value();
      if (v !== 'text' && v !== 'json') throw new UsageError(`--log-format takes text or json, not '${v}'`);
      a.logFormat = v;
    } else throw new UsageError(`unknown argument '${arg}'`);
  }
  return a;
}

/** What the CLI needs from the core's Broker (packages/broker-lite/src/index.ts). */
interface BrokerLike extends LogPublisher {
  listen(): Promise<void>;
  close(): Promise<void>;
  setSecurity(authenticator?: Authenticator, accessControl?: AccessControl): void;
  setListenerSecurity?(index: number, security: ListenerSecurity): void;
  setMemoryLimit?(bytes: number): void;
  setListenerTls?(index: number, files: { cert: string; key: string; ca?: string }): void;
  readonly addresses: unknown;
}
type BrokerCtor = new (options: BrokerOptions) => BrokerLike;
type StartBridges = (broker: BrokerLike, configs: BridgeConfig[], options: BridgeOptions) => Promise<Bridges>;

async function loadBrokerClass(
  withBridges: boolean,
): Promise<{ Broker: BrokerCtor; startBridges?: StartBridges }> {
  // The core only to run a broker (`check` and `passwd` start without it), the bridges (and with
  // them the MQTT client) only for a config that has some: every module loaded stays in RSS for
  // the life of the process. Literal specifiers, so that the single-file bundle holds them.
  const { Broker } = await import('./broker.ts');
  if (!withBridges) return { Broker };
  const { startBridges } = await import('./bridge.ts');
  return { Broker, startBridges: startBridges as unknown as StartBridges };
}

function makeLogger(cfg: BrokerConfig, format: LogFormat | undefined): Logger {
  const dests: LogDestination[] = [];
  let syslog: SyslogOptions | undefined;
  for (const d of cfg.logDest) {
    if (d.kind === 'stdout' || d.kind === 'stderr') dests.push(stdDestination(d.kind));
    else if (d.kind === 'file') {
      try {
        dests.push(fileDestination(d.path));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'error';
        throw new ConfigError(
          d.file ?? cfg.file ?? '',
          d.line ?? 0,
          'log_dest',
          `cannot open ${d.path} (${code})`,
        );
      }
    } else if (d.kind === 'syslog') {
      const command = findLoggerCommand();
      if (command === undefined)
        throw new ConfigError(
          d.file ?? cfg.file ?? '',
          d.line ?? 0,
          'log_dest',
          "syslog needs the logger command (util-linux; Debian's bsdutils) on PATH",
        );
      syslog = { command, facility: syslogFacility(cfg.logFacility), socket: cfg.logSyslogSocket };
    }
  }
  return createLogger({
    types: cfg.logTypes,
    destinations: dests,
    format: format ?? 'auto',
    timestamp: cfg.logTimestamp,
    timestampFormat: cfg.logTimestampFormat,
    syslog,
    topic: cfg.logDest.some((d) => d.kind === 'topic'),
  });
}

/** What an operator checks after a renewal: which certificate it is now, and until when. */
function certificateSummary(pem: string): Record<string, unknown> {
  try {
    const c = new X509Certificate(pem);
    return { subject: c.subject.replaceAll('\n', ', '), fingerprint: c.fingerprint256, validTo: c.validTo };
  } catch {
    return {};
  }
}

/** `addresses` as the core gives them, reduced to what a log line needs. */
function describeAddresses(addresses: unknown): Array<Record<string, unknown>> {
  const list = Array.isArray(addresses) ? addresses : addresses === undefined ? [] : [addresses];
  return list.map((a) =>
    typeof a === 'object' && a !== null ? { ...(a as Record<string, unknown>) } : { address: a },
  );
}

/** Settings that differ between two loads of the config, other than the ones SIGHUP applies. */
export function restartOnlyChanges(before: BrokerConfig, after: BrokerConfig): string[] {
  const skip = new Set(['warnings', 'files', 'passwordFile', 'aclFile', 'memoryLimit']);
  const strip = (c: BrokerConfig): Record<string, unknown> => ({
    ...c,
    // Where a listener was declared is not a setting; an added comment line must not count.
    // per_listener_settings: a listener's password_file and acl_file reload; its
    // allow_anonymous does not.
    listeners: c.listeners.map(({ file: _f, line: _l, security, ...rest }) =>
      security === undefined ? rest : { ...rest, allowAnonymous: security.allowAnonymous },
    ),
    bridges: c.bridges.map(({ file: _f, line: _l, topics, ...rest }) => ({
      ...rest,
      topics: topics.map(({ line: _tl, ...t }) => t),
    })),
    logDest: c.logDest.map((d) => (d.kind === 'file' ? { kind: d.kind, path: d.path } : { kind: d.kind })),
    metricsListener:
      c.metricsListener === undefined
        ? undefined
        : { port: c.metricsListener.port, host: c.metricsListener.host },
  });
  const a = strip(before);
  const b = strip(after);
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys]
    .filter((k) => !skip.has(k) && JSON.stringify(a[k]) !== JSON.stringify(b[k]))
    .map((k) => MOSQUITTO_NAMES[k] ?? k);
}

const MOSQUITTO_NAMES: Record<string, string> = {
  listeners: 'listener',
  localOnly: 'listener',
  allowAnonymous: 'allow_anonymous',
  persistence: 'persistence',
  persistenceLocation: 'persistence_location',
  autosaveIntervalSeconds: 'autosave_interval',
  persistenceCommitWindowMs: 'persistence_commit_window',
  maxInflightMessages: 'max_inflight_messages',
  maxQueuedMessages: 'max_queued_messages',
  maxQueuedBytes: 'max_queued_bytes',
  messageSizeLimit: 'message_size_limit',
  maxPacketSize: 'max_packet_size',
  maxUnauthenticatedPacketSize: 'max_unauthenticated_packet_size',
  maxUnauthenticatedBytes: 'max_unauthenticated_bytes',
  maxTopicLevels: 'max_topic_levels',
  memoryLimit: 'memory_limit',
  maxTopicAliasOut: 'max_topic_alias_out',
  persistentClientExpiration: 'persistent_client_expiration',
  maxConnections: 'max_connections',
  maxKeepalive: 'max_keepalive',
  retainAvailable: 'retain_available',
  sysInterval: 'sys_interval',
  connectionMessages: 'connection_messages',
  logDest: 'log_dest',
  logTypes: 'log_type',
  logTimestamp: 'log_timestamp',
  logTimestampFormat: 'log_timestamp_format',
  logFacility: 'log_facility',
  logSyslogSocket: 'log_syslog_socket',
  pidFile: 'pid_file',
  bridges: 'connection (bridges)',
  metricsListener: 'metrics_listener',
};

/** A listener's password_file and acl_file (what SIGHUP reloads under per_listener_settings). */
function pickFiles(s: { passwordFile?: string; aclFile?: string } | undefined): {
  passwordFile?: string;
  aclFile?: string;
} {
  return { passwordFile: s?.passwordFile, aclFile: s?.aclFile };
}

function reportConfigError(io: CliIo, err: unknown): number {
  if (err instanceof ConfigError) {
    io.stderr.write(`Error: ${err.message}\n`);
    return EXIT_CONFIG;
  }
  throw err;
}

async function runCheck(argv: string[], io: CliIo): Promise<number> {
  const rest = argv[0] === '-c' || argv[0] === '--config-file' ? argv.slice(1) : argv;
  if (rest.length !== 1)
    throw new UsageError('check takes one configuration file: broker-lite check -c FILE');
  try {
    const cfg = loadConfig(rest[0]);
    for (const w of cfg.warnings) io.stderr.write(`Warning: ${formatWarning(w)}\n`);
    const security = await loadSecurity(cfg);
    // Reads the TLS files too, so a bad certificate is found now.
    await buildBrokerOptions(cfg, { log() {} }, security);
    io.stdout.write(describeConfig(cfg, security));
    io.stdout.write(`# ${rest[0]}: OK${cfg.warnings.length ? ` (${cfg.warnings.length} warnings)` : ''}\n`);
    return EXIT_OK;
  } catch (err) {
    return reportConfigError(io, err);
  }
}

async function runBroker(argv: string[], io: CliIo): Promise<number> {
  const args = parseRunArgs(argv);
  const overrides = { ports: args.ports, verbose: args.verbose };
  let cfg: BrokerConfig;
  let security: Security;
  let options: BrokerOptions;
  let logger: Logger;
  try {
    cfg = args.config === undefined ? defaultConfig(overrides) : loadConfig(args.config, overrides);
    logger = makeLogger(cfg, args.logFormat);
    ({ options, security } = await buildBrokerOptions(cfg, logger));
  } catch (err) {
    return reportConfigError(io, err);
  }
  logger.log('notice', `broker-lite ${VERSION} starting`, { pid: process.pid });
  logger.log('notice', cfg.file ? `Config loaded from ${cfg.file}` : 'Using default config (local only)');
  for (const w of cfg.warnings) logger.log('warning', formatWarning(w));
  if (args.daemon) logger.log('warning', '-d is not supported: broker-lite stays in the foreground');
  if (cfg.logDest.some((d) => d.kind === 'syslog') && !existsSync(cfg.logSyslogSocket))
    logger.log(
      'warning',
      `log_dest syslog: no syslog socket at ${cfg.logSyslogSocket} yet; lines go there once it exists`,
    );

  const { Broker, startBridges } = await loadBrokerClass(cfg.bridges.length > 0);
  const broker = new Broker(options);
  const startTls = new Map<number, string>();
  for (const [i, l] of options.listeners.entries())
    if (l.tls !== undefined) startTls.set(i, `${l.tls.cert}\0${l.tls.key}\0${l.tls.ca ?? ''}`);
  try {
    await broker.listen();
  } catch (err) {
    logger.log('error', `cannot start listening: ${(err as Error).message}`);
    await broker.close().catch(() => {});
    return EXIT_FAILURE;
  }
  // Lines go to $SYS/broker/log from here on (before, no client could be there to read them).
  logger.attachBroker(broker);
  if (cfg.pidFile) {
    try {
      writeFileSync(cfg.pidFile, `${process.pid}\n`);
    } catch (err) {
      // Mosquitto exits when it cannot write its pid file; so do we.
      logger.log('error', `cannot write pid_file ${cfg.pidFile}: ${(err as Error).message}`);
      await broker.close();
      return EXIT_FAILURE;
    }
  }

  let bridges: Bridges | undefined;
  if (cfg.bridges.length > 0) {
    try {
      if (startBridges === undefined)
        throw new Error('the broker core (src/index.ts) exports no startBridges');
      bridges = await startBridges(broker, cfg.bridges, {
        queueDir: (name) => defaultBridgeDir(cfg.persistence ? cfg.persistenceLocation : undefined, name),
        persistent: cfg.persistence,
      });
    } catch (err) {
      logger.log('error', `cannot start bridges: ${(err as Error).message}`);
      await broker.close();
      return EXIT_FAILURE;
    }
  }

  // A crash goes to the configured log too (a log file is often all an operator has), then
  // the process exits 1 as it would anyway; what was acknowledged is already on disk.
  const fatal = (what: string, err: unknown): void => {
    logger.log('error', `${what}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(EXIT_FAILURE);
  };
  const onCrash = (err: unknown): void => fatal('uncaught exception', err);
  const onRejection = (err: unknown): void => fatal('unhandled rejection', err);
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onRejection);

  let reloading: Promise<void> | undefined;
  const reload = async (): Promise<void> => {
    logger.reopen();
    try {
      // The config file is read again for password_file and acl_file (they may have moved);
      // other settings need a restart, and saying which beats applying half of them.
      const next = args.config === undefined ? cfg : loadConfig(args.config, overrides);
      const changed = restartOnlyChanges(cfg, next);
      // allow_anonymous needs a restart (changed settings are named below), the files do not.
      const keepAnonymous = next.listeners.map((l, i) =>
        l.security === undefined
          ? l
          : { ...l, security: { ...l.security, allowAnonymous: cfg.listeners[i]?.security?.allowAnonymous } },
      );
      const sec = await loadSecurity({
        ...next,
        allowAnonymous: cfg.allowAnonymous,
        listeners: keepAnonymous,
      });
      // Bridges connect internally, outside password and ACL checks: only the broker needs them.
      broker.setSecurity(sec.authenticator, sec.accessControl);
      if (
        cfg.perListenerSettings &&
        next.perListenerSettings &&
        next.listeners.length === cfg.listeners.length
      )
        for (const [i, own] of (sec.listeners ?? []).entries()) broker.setListenerSecurity?.(i, own.live);
      security = sec;
      // Reloaded as in Mosquitto; lowering it frees nothing, it refuses what comes next.
      if (next.memoryLimit !== cfg.memoryLimit) broker.setMemoryLimit?.(next.memoryLimit);
      cfg = {
        ...cfg,
        passwordFile: next.passwordFile,
        aclFile: next.aclFile,
        memoryLimit: next.memoryLimit,
        listeners:
          next.listeners.length === cfg.listeners.length
            ? cfg.listeners.map((l, i) =>
                l.security === undefined
                  ? l
                  : { ...l, security: { ...l.security, ...pickFiles(next.listeners[i].security) } },
              )
            : cfg.listeners,
      };
      logger.log('notice', 'reloaded password and ACL files', {
        passwordFile: cfg.passwordFile,
        users: security.passwords?.users.size,
        aclFile: cfg.aclFile,
        aclUsers: security.acl?.rules.users.size,
      });
      if (changed.length > 0) {
        logger.log('warning', `changed settings need a restart to apply: ${changed.join(', ')}`);
      }
    } catch (err) {
      const message = err instanceof ConfigError ? err.message : (err as Error).message;
      logger.log('error', `reload failed, keeping the previous password and ACL files: ${message}`);
    }
    await reloadCertificates();
  };
  // The listeners' certificate, key and CA files are read again (a renewal writes new ones at the
  // same paths); each listener keeps its old files when its new ones do not load.
  const loadedTls = new Map<number, string>();
  const reloadCertificates = async (): Promise<void> => {
    const bound = describeAddresses(broker.addresses);
    for (const [i, l] of cfg.listeners.entries()) {
      if (l.certfile === undefined) continue;
      const port = Number(bound[i]?.port ?? l.port);
      let files: Awaited<ReturnType<typeof loadListenerTls>>;
      try {
        files = await loadListenerTls(l);
        if (files === undefined) continue;
        const text = `${files.cert}\0${files.key}\0${files.ca ?? ''}`;
        if ((loadedTls.get(i) ?? startTls.get(i)) === text) continue;
        broker.setListenerTls?.(i, files);
        loadedTls.set(i, text);
      } catch (err) {
        const message = err instanceof ConfigError ? err.message : (err as Error).message;
        logger.log(
          'error',
          `TLS files for the listener on port ${port} not reloaded, keeping the old ones: ${message}`,
          {
            port,
            certfile: l.certfile,
          },
        );
        continue;
      }
      logger.log('notice', `reloaded TLS certificate for the listener on port ${port}`, {
        port,
        certfile: l.certfile,
        ...certificateSummary(files.cert),
      });
    }
  };
  const onHup = (): void => {
    // One reload at a time; a burst of SIGHUPs gives one more reload after the current one.
    reloading = (reloading ?? Promise.resolve()).then(reload);
  };
  process.on('SIGHUP', onHup);

  const code = await new Promise<number>((resolveExit) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) {
        logger.log('warning', `${signal} again while closing: exiting now`);
        resolveExit(EXIT_FAILURE);
        return;
      }
      stopping = true;
      logger.log('notice', `${signal} received, closing`);
      // Nothing more on $SYS/broker/log: the clients are being disconnected, the store closed.
      logger.attachBroker(null);
      // Bridges first: their local sessions end cleanly and their queues are closed on disk.
      (bridges?.close() ?? Promise.resolve())
        .catch((err: unknown) =>
          logger.log('error', `error while closing bridges: ${(err as Error).message}`),
        )
        .then(() => broker.close())
        .then(
          () => resolveExit(EXIT_OK),
          (err: unknown) => {
            logger.log('error', `error while closing: ${(err as Error).message}`);
            resolveExit(EXIT_FAILURE);
          },
        );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    // After the pid file, so whoever waits for this line finds the pid file too, and after the
    // signal handlers, so a SIGHUP or SIGTERM sent on seeing it does not kill the process. The
    // core logs each listener; this line says the whole broker is up, with the ports bound.
    const bound = describeAddresses(broker.addresses);
    logger.log('notice', 'ready', {
      pid: process.pid,
      listeners: bound
        .map((a) => `${a.protocol ?? 'mqtt'}://${a.host ?? a.address ?? '*'}:${a.port}`)
        .join(' '),
      ports: bound.map((a) => a.port).join(','),
    });
  });
  process.removeListener('SIGHUP', onHup);
  process.removeListener('uncaughtException', onCrash);
  process.removeListener('unhandledRejection', onRejection);
  if (cfg.pidFile) {
    try {
      unlinkSync(cfg.pidFile);
    } catch {
      // Already gone.
    }
  }
  logger.log('notice', 'broker-lite stopped', { exitCode: code });
  logger.close();
  return code;
}

/** The whole command line; resolves to the exit code. */
export async function main(argv: string[], io: CliIo = process): Promise<number> {
  try {
    if (argv[0] === 'passwd') return await runPasswd(argv.slice(1), { stdin: process.stdin, ...io });
    if (argv[0] === 'check') return await runCheck(argv.slice(1), io);
    if (argv.includes('-h') || argv.includes('--help')) {
      io.stdout.write(USAGE);
      return EXIT_OK;
    }
    if (argv.includes('--version')) {
      io.stdout.write(`broker-lite ${VERSION}\n`);
      return EXIT_OK;
    }
    return await runBroker(argv, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`Error: ${err.message}\n\n${USAGE}`);
      return EXIT_CONFIG;
    }
    io.stderr.write(`Error: ${(err as Error).stack ?? String(err)}\n`);
    return EXIT_FAILURE;
  }
}

/** Entry point for bin/broker-lite.js: runs `main` on process.argv and exits with its code. */
export async function run(): Promise<void> {
  let code: number;
  try {
    code = await main(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    code = EXIT_FAILURE;
  }
  // Signal handlers and a stdin reader can hold the event loop open after we are done.
  process.exit(code);
}
