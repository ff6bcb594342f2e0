/**
 * `/metrics` in Prometheus' text format (version 0.0.4) on `metrics_listener`: the counters the
 * broker keeps anyway, read when scraped. Names follow Prometheus' conventions: the
 * `mqtt_edge_broker_` prefix, base units (seconds, bytes), `_total` on counters, labels for
 * QoS, drop reasons and bridges. The listener is plain HTTP with one page and small bounds; it
 * takes no part in MQTT (no login: bind it where only Prometheus reaches, e.g. 127.0.0.1).
 */
import { readdirSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import type { BridgeState } from './bridge.ts';
import type { Broker, DropReason } from './broker.ts';
import { bindServer } from './listeners.ts';
import { hashLoad, refusedLogins } from './login-queue.ts';
import { BROKER_VERSION } from './sys.ts';

/** Scrapers served at once; more are answered 503 (a scrape is a few kilobytes, built at once). */
export const MAX_METRICS_CLIENTS = 8;
/** A scrape's request must be in within this (a scraper sends it at once). */
const REQUEST_TIMEOUT_MS = 5000;

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const BRIDGE_STATES: readonly BridgeState[] = [
  'starting',
  'connecting',
  'connected',
  'waiting',
  'idle',
  'stopped',
];

type Labels = Record<string, string | number>;

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function labelText(l: Labels | undefined): string {
  if (l === undefined) return '';
  const parts = Object.entries(l).map(([k, v]) => `${k}="${escapeLabel(String(v))}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

function num(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Number.POSITIVE_INFINITY) return '+Inf';
  if (v === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(v);
}

/** One metric family at a time: HELP, TYPE, then its samples. */
class Exposition {
  private readonly lines: string[] = [];

  family(
    name: string,
    type: 'counter' | 'gauge' | 'summary',
    help: string,
    samples: Array<[Labels | undefined, number]>,
  ): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) this.lines.push(`${name}${labelText(labels)} ${num(value)}`);
  }

  one(name: string, type: 'counter' | 'gauge', help: string, value: number, labels?: Labels): void {
    this.family(name, type, help, [[labels, value]]);
  }

  /** A summary without quantiles: `_sum` and `_count`. */
  summary(name: string, help: string, sum: number, count: number): void {
    this.lines.push(
      `# HELP ${name} ${help}`,
      `# TYPE ${name} summary`,
      `${name}_sum ${num(sum)}`,
      `${name}_count ${num(count)}`,
    );
  }

  text(): string {
    return `${this.lines.join('\n')}\n`;
  }
}

const QOS: Array<0 | 1 | 2> = [0, 1, 2];
const P = 'mqtt_edge_broker_';

function openFds(): number {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return Number.NaN;
  }
}

/** The exposition text: everything is read now, nothing was kept for it. */
export function renderMetrics(b: Broker, startedAt: number): string {
  const e = new Exposition();
  const c = b.counters;
  e.one(`${P}info`, 'gauge', 'The broker, by version (always 1).', 1, { version: BROKER_VERSION });
  e.one(
    `${P}start_time_seconds`,
    'gauge',
    'When the broker started, seconds since the epoch.',
    startedAt / 1000,
  );

  let connected = 0;
  let queued = 0;
  let inflight = 0;
  let longest = 0;
  let queuedBytes = 0;
  for (const s of b.sessions.values()) {
    if (s.conn !== null) connected++;
    const q = s.queueLength;
    queued += q;
    queuedBytes += s.queuedBytes;
    inflight += s.inflightCount;
    if (q > longest) longest = q;
  }
  e.one(`${P}connections`, 'gauge', 'Open MQTT connections, logged in or not.', b.connections.size);
  e.one(`${P}clients_connected`, 'gauge', 'Sessions with a connection (logged in).', connected);
  e.one(`${P}sessions`, 'gauge', 'Sessions, connected or kept for offline clients.', b.sessions.size);
  e.one(
    `${P}pending_sockets`,
    'gauge',
    'Sockets in a TLS handshake or before their WebSocket upgrade (or HTTP requests of a websockets listener).',
    b.pendingSockets.size,
  );
  e.one(`${P}max_connections`, 'gauge', 'max_connections (-1: no limit).', b.options.maxConnections);
  e.one(`${P}connects_total`, 'counter', 'CONNECTs accepted.', c.connects);
  e.one(`${P}auth_failures_total`, 'counter', 'CONNECTs refused for their credentials.', c.authFailures);
  e.one(`${P}packets_received_total`, 'counter', 'MQTT packets received, every type.', c.packetsIn);
  e.one(`${P}packets_sent_total`, 'counter', 'MQTT packets sent, every type.', c.packetsOut);
  e.one(`${P}bytes_received_total`, 'counter', 'Bytes received from clients, on the wire.', c.bytesIn);
  e.one(`${P}bytes_sent_total`, 'counter', 'Bytes sent to clients, on the wire.', c.bytesOut);
  e.family(
    `${P}messages_received_total`,
    'counter',
    'PUBLISH packets received from clients, by QoS.',
    QOS.map((q) => [{ qos: q }, c.msgsInQos[q]]),
  );
  e.family(
    `${P}messages_sent_total`,
    'counter',
    'PUBLISH packets sent to clients, by QoS.',
    QOS.map((q) => [{ qos: q }, c.msgsOutQos[q]]),
  );
  e.family(
    `${P}messages_dropped_total`,
    'counter',
    'Messages not delivered to a client they were for, by reason.',
    (Object.keys(c.drops) as DropReason[]).map((r) => [{ reason: r }, c.drops[r]]),
  );
  e.one(
    `${P}messages_expired_total`,
    'counter',
    'Messages whose MQTT 5 expiry passed before delivery.',
    c.expired,
  );
  e.one(
    `${P}publisher_pauses_total`,
    'counter',
    "Times a publisher's socket was paused for a subscriber's full queue.",
    c.publisherPauses,
  );
  e.one(`${P}retained_messages`, 'gauge', 'Retained messages held ($SYS included).', b.retain.size);
  e.one(`${P}subscriptions`, 'gauge', 'Subscriptions, all sessions.', b.router.index.size);
  e.one(
    `${P}shared_subscription_groups`,
    'gauge',
    'Shared subscription groups with a member.',
    b.router.shareGroupCount,
  );
  e.one(`${P}queued_messages`, 'gauge', 'QoS 1/2 messages queued for sessions (not yet in flight).', queued);
  e.one(`${P}queued_bytes`, 'gauge', 'Payload bytes of those messages.', queuedBytes);
  e.one(`${P}inflight_messages`, 'gauge', 'QoS 1/2 messages sent and not yet acknowledged.', inflight);
  e.one(`${P}queue_length_max`, 'gauge', 'The longest queue of one session.', longest);
  e.one(`${P}wills_delayed`, 'gauge', 'Wills waiting out their MQTT 5 will delay.', b.wills.size);

  const p = b.persist;
  e.one(`${P}persistence_enabled`, 'gauge', 'Persistence is on (1) or off (0).', p === null ? 0 : 1);
  if (p !== null) {
    const t = p.timing;
    e.one(`${P}persistence_syncs_total`, 'counter', 'fdatasync calls (appends and snapshots).', p.syncs);
    e.one(
      `${P}persistence_written_bytes_total`,
      'counter',
      'Bytes written to the persistence log and its snapshots.',
      p.writtenBytes,
    );
    e.one(
      `${P}persistence_written_pages_total`,
      'counter',
      '4 KiB pages those writes touched (an append starting mid-page rewrites that page).',
      p.writtenPages,
    );
    e.one(
      `${P}persistence_unwritten_entries_total`,
      'counter',
      'Queue entries of persistent sessions settled before their group commit, never written.',
      p.unwrittenEntries,
    );
    e.summary(
      `${P}persistence_sync_seconds`,
      'fdatasync of the appended log (one per group commit), seconds.',
      t.syncSeconds,
      t.syncCount,
    );
    e.one(
      `${P}persistence_sync_max_seconds`,
      'gauge',
      'The longest of those since the start.',
      t.syncMaxSeconds,
    );
    e.one(
      `${P}persistence_lag_seconds`,
      'gauge',
      'How long the oldest change not yet on disk has waited (0: all synced).',
      p.lagSeconds,
    );
    e.one(
      `${P}persistence_pending_acks`,
      'gauge',
      'Acknowledgements waiting for their commit.',
      p.pendingAcks,
    );
    e.one(`${P}persistence_log_bytes`, 'gauge', 'Size of the persistence log on disk.', p.logSize);
    e.one(
      `${P}persistence_refusing`,
      'gauge',
      '1 while the disk refuses writes (new QoS 1/2 refused).',
      p.refusing ? 1 : 0,
    );
    e.summary(
      `${P}persistence_snapshot_seconds`,
      'Snapshots written, seconds each.',
      t.snapshotSeconds,
      t.snapshots,
    );
  }

  e.one(
    `${P}unauthenticated_connections`,
    'gauge',
    'Connections that sent bytes and have no CONNACK yet.',
    b.unauthenticated.connections,
  );
  e.one(`${P}unauthenticated_bytes`, 'gauge', 'Bytes those connections hold.', b.unauthenticated.bytes);
  e.one(
    `${P}unauthenticated_bytes_limit`,
    'gauge',
    'max_unauthenticated_bytes (0: no limit).',
    b.options.maxUnauthenticatedBytes,
  );
  e.one(
    `${P}unauthenticated_bytes_peak`,
    'gauge',
    'The most unauthenticated_bytes has been since the start.',
    b.unauthenticated.peak,
  );
  const load = hashLoad();
  e.one(`${P}login_hashes_running`, 'gauge', 'Password hashes being computed.', load.running);
  e.one(`${P}login_queue_waiting`, 'gauge', 'Logins waiting for a password hash.', load.waiting);
  e.one(`${P}login_queue_sources`, 'gauge', 'Addresses with logins waiting.', load.sources);
  e.one(
    `${P}login_queue_refused_total`,
    'counter',
    'Logins refused because the queue was full.',
    refusedLogins(),
  );
  e.one(`${P}memory_limit_bytes`, 'gauge', 'memory_limit (0: none).', b.memory.bytes);
  e.one(`${P}memory_limit_exceeded`, 'gauge', '1 while RSS is over memory_limit.', b.memory.over ? 1 : 0);
  e.one(
    `${P}memory_limit_refused_total`,
    'counter',
    'Messages refused while over memory_limit.',
    b.memory.refusedTotal,
  );

  const bridges = b.bridgeStats?.() ?? [];
  if (bridges.length > 0) {
    const by = <T>(f: (s: (typeof bridges)[number]) => T): Array<[Labels, T]> =>
      bridges.map((s) => [{ bridge: s.name }, f(s)]);
    e.family(
      `${P}bridge_up`,
      'gauge',
      'The bridge is connected to its remote (1) or not (0).',
      by((s) => (s.state === 'connected' ? 1 : 0)),
    );
    e.family(
      `${P}bridge_state`,
      'gauge',
      'The bridge state: 1 for the one it is in.',
      bridges.flatMap((s) =>
        BRIDGE_STATES.map((st): [Labels, number] => [{ bridge: s.name, state: st }, s.state === st ? 1 : 0]),
      ),
    );
    e.family(
      `${P}bridge_connects_total`,
      'counter',
      'Connections made to the remote.',
      by((s) => s.connects),
    );
    e.family(
      `${P}bridge_connect_failures_total`,
      'counter',
      'Connection attempts that failed.',
      by((s) => s.connectFailures),
    );
    e.family(
      `${P}bridge_queue_messages`,
      'gauge',
      'Messages in the bridge queue on disk (the backlog).',
      by((s) => s.queue.count),
    );
    e.family(
      `${P}bridge_queue_bytes`,
      'gauge',
      'Bytes in the bridge queue on disk.',
      by((s) => s.queue.bytes),
    );
    e.family(
      `${P}bridge_queue_oldest_age_seconds`,
      'gauge',
      'Age of the oldest message in the bridge queue.',
      by((s) => s.queue.oldestAgeMs / 1000),
    );
    e.family(
      `${P}bridge_held_messages`,
      'gauge',
      'Outgoing messages held unacknowledged because the queue could not write.',
      by((s) => s.outHeld),
    );
    e.family(
      `${P}bridge_messages_queued_total`,
      'counter',
      'Outgoing QoS 1/2 messages stored in the queue.',
      by((s) => s.outQueued),
    );
    e.family(
      `${P}bridge_messages_sent_total`,
      'counter',
      'Outgoing messages the remote acknowledged.',
      by((s) => s.outAcked),
    );
    e.family(
      `${P}bridge_messages_received_total`,
      'counter',
      'Messages received from the remote.',
      by((s) => s.inReceived),
    );
    e.family(
      `${P}bridge_messages_dropped_total`,
      'counter',
      'Messages a bridge did not move, by direction and reason.',
      bridges.flatMap(
        (s): Array<[Labels, number]> => [
          [{ bridge: s.name, direction: 'out', reason: 'not_forwarded' }, s.outDropped],
          [{ bridge: s.name, direction: 'out', reason: 'queue_dropped_oldest' }, s.queue.droppedOldest],
          [{ bridge: s.name, direction: 'out', reason: 'queue_rejected_new' }, s.queue.rejectedNew],
          [{ bridge: s.name, direction: 'in', reason: 'not_published' }, s.inDropped],
        ],
      ),
    );
    e.family(
      `${P}bridge_loops_stopped_total`,
      'counter',
      'Messages the loop guard kept from going round.',
      by((s) => s.loopsStopped),
    );
  }

  const cpu = process.cpuUsage();
  e.one(
    'process_cpu_seconds_total',
    'counter',
    'User and system CPU time spent, seconds.',
    (cpu.user + cpu.system) / 1e6,
  );
  e.one('process_resident_memory_bytes', 'gauge', 'Resident set size, bytes.', process.memoryUsage.rss());
  e.one(
    'process_start_time_seconds',
    'gauge',
    'When the process started, seconds since the epoch.',
    Math.floor(Date.now() / 1000 - process.uptime()),
  );
  e.one('process_open_fds', 'gauge', 'Open file descriptors.', openFds());
  return e.text();
}

export interface MetricsServer {
  address: { port: number; host: string };
  close(): Promise<void>;
}

/** The metrics listener: GET or HEAD /metrics, nothing else; a few scrapers at once. */
export async function startMetricsListener(
  b: Broker,
  at: { port: number; host?: string },
  startedAt: number,
): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    const send = (status: number, body: string, headers: Record<string, string> = {}): void => {
      res.writeHead(status, {
        'content-type': status === 200 ? CONTENT_TYPE : 'text/plain; charset=utf-8',
        'content-length': String(Buffer.byteLength(body)),
        'cache-control': 'no-store',
        ...headers,
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (path !== '/metrics') return send(404, 'Not Found: the metrics are at /metrics\n');
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return send(405, 'Method Not Allowed\n', { allow: 'GET, HEAD' });
    send(200, renderMetrics(b, startedAt));
  });
  server.maxConnections = MAX_METRICS_CLIENTS;
  server.headersTimeout = REQUEST_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.keepAliveTimeout = REQUEST_TIMEOUT_MS;
  server.maxHeadersCount = 64;
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await bindServer(server, at.port, at.host);
  server.on('error', (err) => b.log('error', 'metrics listener error', { error: err.message }));
  const addr = server.address() as net.AddressInfo;
  return {
    address: { port: addr.port, host: addr.address },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}
