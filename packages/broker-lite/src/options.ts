/**
 * The contract between the broker core (listeners, sessions, routing, persistence) and what
 * configures it (mosquitto.conf parsing, password and ACL files, the CLI). The config layer turns
 * a file into BrokerOptions; the core never reads a config file itself.
 */

export interface TlsOptions {
  /** PEM contents (not paths: the config layer reads the files). */
  cert: string;
  key: string;
  ca?: string;
  /** Mosquitto `require_certificate`. */
  requireCertificate: boolean;
  /**
   * Mosquitto `use_identity_as_username`: the client certificate's first CN is the user name and
   * the password file is not consulted (a certificate without a CN is refused). Needs
   * requireCertificate. Off: the certificate only opens the TLS connection; the CONNECT's user
   * name and password are checked as on any listener.
   */
  useIdentityAsUsername: boolean;
  /**
   * Mosquitto `use_subject_as_username`: the certificate's whole subject, in the RFC 2253 form
   * Mosquitto uses (`CN=dev 9,OU=Sensors,O=Acme\, Inc.,C=GB`), is the user name, as above.
   * useIdentityAsUsername wins when both are set (as in Mosquitto). Default false.
   */
  useSubjectAsUsername?: boolean;
}

export interface ListenerOptions {
  port: number;
  /** Address to bind; undefined binds all interfaces (Mosquitto's `listener 1883`). */
  host?: string;
  protocol: 'mqtt' | 'websockets';
  tls?: TlsOptions;
  /**
   * Mosquitto `use_username_as_clientid`: once authenticated, a client's user name is its client
   * id, so no user can take over another's session (with `%c` ACL patterns, its topics too); a
   * client without a user name is refused (5 / 0x87). Default false.
   */
  useUsernameAsClientid?: boolean;
  /**
   * Mosquitto `http_dir` (websockets listeners only): plain HTTP GET/HEAD requests get the files
   * under this directory (`/` and other paths ending in `/`: their index.html). Nothing outside
   * it is served, whatever the path or symbolic links say. Undefined: no files (426).
   */
  httpDir?: string;
  /** `status_page true` (websockets listeners only): the built-in status page at `/`. */
  statusPage?: boolean;
  /**
   * Mosquitto `per_listener_settings true`: this listener's login rules and ACL, in place of the
   * broker's (allowAnonymous, authenticator, accessControl). Its clients' sessions keep it.
   */
  security?: ListenerSecurity;
}

/**
 * One listener's allow_anonymous, password check and ACL (per_listener_settings). The object is
 * shared by the listener and its clients' sessions and changed in place on SIGHUP
 * (Broker.setListenerSecurity). A listener without an ACL lets its clients use every topic.
 */
export interface ListenerSecurity {
  allowAnonymous: boolean;
  authenticator?: Authenticator;
  accessControl?: AccessControl;
}

/** Decides whether a CONNECT may proceed. Called once per connection attempt. */
export interface Authenticator {
  authenticate(request: {
    clientId: string;
    username: string | undefined;
    password: Uint8Array | undefined;
    /** Common name of a verified client certificate, when the listener asked for one. */
    certificateCommonName?: string;
    /**
     * The client's address (IPv4 or IPv6, no port; for WebSocket the address of the socket the
     * upgrade came on). Password checks queue per address so that a flood from one address
     * cannot hold up the others.
     */
    remoteAddress?: string;
    /** Aborted when the client goes away before the answer: work still waiting may be dropped. */
    signal?: AbortSignal;
  }): boolean | Promise<boolean>;
}

export type AclAccess = 'read' | 'write' | 'subscribe';

/**
 * Topic access. `write`: may this client publish to `topic`; `read`: may this client receive
 * a message published on `topic` (checked per delivery, as Mosquitto does); `subscribe`: may it
 * subscribe to `filter`.
 */
export interface AccessControl {
  allowed(
    access: AclAccess,
    client: { clientId: string; username: string | undefined },
    topic: string,
  ): boolean;
}

export interface LogSink {
  /** One structured line per event; `level` filters by Mosquitto-like log types. */
  log(
    level: 'error' | 'warning' | 'notice' | 'information' | 'debug',
    message: string,
    fields?: Record<string, unknown>,
  ): void;
  /**
   * Whether lines of a Mosquitto log_type are wanted (`subscribe`, `unsubscribe`): the broker
   * writes those lines only then. Without it, none are written.
   */
  enabled?(type: string): boolean;
}

export interface BrokerOptions {
  listeners: ListenerOptions[];
  allowAnonymous: boolean;
  authenticator?: Authenticator;
  accessControl?: AccessControl;
  /** Directory for persistent state; undefined = no persistence (Mosquitto `persistence false`). */
  persistenceDir?: string;
  /** Seconds between snapshot compactions of the persistence log (Mosquitto `autosave_interval`). */
  autosaveIntervalSeconds: number;
  /**
   * Group-commit window, ms (`persistence_commit_window`): how long the persistence gathers what
   * it has to write before one write and one fdatasync. 0: every event-loop turn that wrote
   * commits at its end. Longer: fewer fsyncs and rewritten flash pages per message, and
   * acknowledgements of QoS 1/2 messages bound for persistent sessions (and deliveries held for
   * persistent QoS 2 sessions) up to this much later; a message every persistent subscriber
   * acknowledged within the window is never written. Default 50 (issue 18.4); the config file
   * takes 0..600000. Output held for a commit brings a longer window's commit to within 50 ms.
   */
  persistenceCommitWindowMs?: number;
  /** Per-client QoS 1/2 messages in flight towards the client (0 = unlimited, Mosquitto default 20). */
  maxInflightMessages: number;
  /** Per-client queued QoS 1/2 messages beyond the in-flight ones (Mosquitto default 1000; 0 = unlimited). */
  maxQueuedMessages: number;
  /** Per-client queued bytes (0 = unlimited). */
  maxQueuedBytes: number;
  /**
   * Mosquitto `persistent_client_expiration`, seconds (0 = none, the default): an offline
   * session ends this long after its disconnect even if it asked for longer (an MQTT 3.1.1 clean
   * session false never ends otherwise). Counted from the disconnect, across restarts.
   */
  persistentClientExpiration?: number;
  /** Largest PUBLISH payload accepted, bytes (0 = the MQTT maximum). */
  messageSizeLimit: number;
  /** -1 = unlimited. */
  maxConnections: number;
  /** Largest keepalive a client may ask for, seconds (5.0: server keepalive is sent when exceeded). */
  maxKeepalive: number;
  retainAvailable: boolean;
  /** Seconds between `$SYS/broker/...` updates (Mosquitto `sys_interval`, default 10; 0 disables). */
  sysInterval: number;
  /** Seconds a socket may stay open without sending CONNECT. */
  connectTimeoutSeconds: number;
  logger: LogSink;
  /**
   * Largest whole packet accepted from a client, bytes (Mosquitto `max_packet_size`; undefined
   * or 0 = the broker's own limit, MAX_ACCEPTED_PACKET = 268,368,900, which larger values also
   * give: what is accepted must still fit MQTT once re-encoded). MQTT 5 clients are told it in
   * CONNACK.
   */
  maxPacketSize?: number;
  /**
   * Receive Maximum advertised to MQTT 5 clients in CONNACK: QoS 1/2 PUBLISHes a client may
   * have unacknowledged towards the broker (1..65535). Default: maxInflightMessages, the window
   * the broker holds towards a client (as Mosquitto advertises max_inflight_messages); 65,535
   * when that is 0. A client that sends more is disconnected with 0x93.
   */
  receiveMaximum?: number;
  /**
   * `max_topic_alias_out` (broker-lite's own): most topic aliases the broker uses towards one
   * MQTT 5 client, within the client's own Topic Alias Maximum (topic-alias.ts has the policy).
   * Default 32; 0 = none; at most 1,024.
   */
  maxTopicAliasOut?: number;
  /** Mosquitto `connection_messages`: log client connects and disconnects (default true). */
  connectionMessages?: boolean;
  /** Milliseconds before a refused login gets its CONNACK (default 1000; slows password guessing). */
  authFailureDelayMs?: number;
  /**
   * Largest packet a connection may send before it has its CONNACK, fixed header included
   * (`max_unauthenticated_packet_size`, broker-lite's own; default 262,144). Checked from the
   * fixed header, before a byte of the body is buffered. 0 = max_packet_size's limit.
   */
  maxUnauthenticatedPacketSize: number;
  /**
   * Bytes all connections not yet CONNACKed may hold together (`max_unauthenticated_bytes`,
   * broker-lite's own; default 16 MiB; 0 = no limit). Over it the biggest holder is closed.
   */
  maxUnauthenticatedBytes: number;
  /**
   * Most levels in a topic name or filter (`max_topic_levels`; default 200, Mosquitto's fixed
   * limit; 0 = no limit). Deeper: PUBLISH closes the connection (5.0: DISCONNECT 0x90), a will
   * refuses the CONNECT (5.0: CONNACK 0x90), a filter gets SUBACK 0x8F (3.1.1: 0x80).
   */
  maxTopicLevels: number;
  /**
   * Mosquitto `memory_limit`, bytes (default 0: none): while the process's RSS, sampled every
   * 100 ms, is over it, incoming messages are refused (5.0 QoS 1/2: PUBACK/PUBREC 0x97; QoS 0:
   * dropped and counted; 3.1.1 QoS 1/2: the publisher is disconnected, as Mosquitto does).
   */
  memoryLimit: number;
  /**
   * `metrics_listener PORT [ADDRESS]` (broker-lite's own): an HTTP listener whose only page is
   * `/metrics`, the broker's counters in Prometheus' text format, read when scraped. Undefined:
   * none.
   */
  metricsListener?: { port: number; host?: string };
}

export const DEFAULT_BROKER_OPTIONS: Omit<BrokerOptions, 'logger'> = {
  listeners: [{ port: 1883, host: '127.0.0.1', protocol: 'mqtt' }],
  allowAnonymous: true,
  autosaveIntervalSeconds: 1800,
  // Issue 18.4: a persistent subscriber on a LAN or loopback acknowledges within it, so most
  // messages are never written; the cost is up to 50 ms on the acks that wait for a commit.
  persistenceCommitWindowMs: 50,
  // Mosquitto's default is 20. A window of 20 is one round trip per 20 messages, so a
  // subscriber's rate is bound by how fast it and the broker get a CPU back: on a 2-core
  // gateway, fan-in QoS 1 measured 164-194k msg/s with 20 and 420k with 100 (bench/RESULTS.md).
  // Memory is the same either way (a message is held until acknowledged, queued or in flight);
  // the cost is up to 100 DUP resends after a reconnect instead of 20.
  maxInflightMessages: 100,
  maxQueuedMessages: 1000,
  maxQueuedBytes: 0,
  messageSizeLimit: 0,
  maxConnections: -1,
  maxKeepalive: 65_535,
  retainAvailable: true,
  sysInterval: 10,
  connectTimeoutSeconds: 10,
  // A CONNECT whose client id, user name, password and will payload are each 64 KiB fits.
  maxUnauthenticatedPacketSize: 256 * 1024,
  maxUnauthenticatedBytes: 16 * 1024 * 1024,
  maxTopicLevels: 200,
  memoryLimit: 0,
};

/*
 * Limits shared by more than one file of the broker core (fixed, not configurable): here rather
 * than in the file that happened to use them first, so that no handler imports another.
 */

/** Topic aliases a client may use towards us (Mosquitto's max_topic_alias default). */
export const TOPIC_ALIAS_MAXIMUM = 10;

/**
 * The broker's Receive Maximum (MQTT 5): the option; else max_inflight_messages, the window the
 * broker holds each way (as Mosquitto advertises it); 0 there (no bound) is the protocol's 65,535.
 */
export function receiveMaximum(opt: number | undefined, maxInflightMessages: number): number {
  if (opt !== undefined && opt >= 1 && opt <= 65_535) return opt;
  return maxInflightMessages >= 1 && maxInflightMessages < 65_535 ? maxInflightMessages : 65_535;
}

/** Socket bytes waiting to go out above which QoS 0 senders are slowed down. */
export const SOFT_WRITE_LIMIT = 256 * 1024;
/** Above this QoS 0 messages to the connection are dropped (and counted): the memory bound. */
export const HARD_WRITE_LIMIT = 4 * 1024 * 1024;
