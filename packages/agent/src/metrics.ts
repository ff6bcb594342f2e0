/**
 * The agent's Prometheus endpoint (issue 14.3): `GET /metrics` on `metrics.listen`, the text
 * exposition format 0.0.4, written by hand over node:http (prom-client measured and not used:
 * see the package README). Nothing is counted for it: a scrape reads the counters the agent keeps
 * anyway (ports, devices, queue, broker link), so an endpoint nobody scrapes costs nothing.
 */
import http from 'node:http';
import type { DurableQueueStats } from '@mqtt-edge/client';
import type { RtuMasterCounters } from '@mqtt-edge/serial-protocol';
import type { AgentCounters } from './agent.ts';
import type { CommandCounters } from './commands.ts';
import type { DeviceCounters, SessionCounters } from './device-session.ts';
import type { DiscoveryCounters } from './discovery.ts';
import type { Logger } from './log.ts';
import type { LinkCounters } from './serial-link.ts';

/** One text exposition, family by family. */
export class Exposition {
  private text = '';
  private family = '';

  /** Starts a metric family: its HELP and TYPE lines. Counters' names end in `_total`. */
  help(name: string, type: 'counter' | 'gauge', help: string): this {
    this.family = name;
    this.text += `# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}\n# TYPE ${name} ${type}\n`;
    return this;
  }

  /** A sample of the current family. */
  sample(value: number, labels?: Record<string, string>): this {
    let l = '';
    if (labels !== undefined) {
      const parts: string[] = [];
      for (const k in labels) parts.push(`${k}="${escapeLabel(labels[k])}"`);
      if (parts.length > 0) l = `{${parts.join(',')}}`;
    }
    this.text += `${this.family}${l} ${formatValue(value)}\n`;
    return this;
  }

  /** A family with a single unlabelled sample. */
  one(name: string, type: 'counter' | 'gauge', help: string, value: number): this {
    return this.help(name, type, help).sample(value);
  }

  toString(): string {
    return this.text;
  }
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Number.POSITIVE_INFINITY) return '+Inf';
  if (v === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(v);
}

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/**
 * `GET /metrics` (and HEAD); any other path 404, any other method 405. Bounded like a small
 * admin endpoint: 16 connections, 8 KiB of headers, 5 s for a request.
 */
export class MetricsServer {
  private constructor(
    private readonly server: http.Server,
    readonly host: string,
    readonly port: number,
  ) {}

  static listen(
    address: { host: string; port: number },
    render: () => string,
    log: Logger,
  ): Promise<MetricsServer | undefined> {
    const server = http.createServer({ maxHeaderSize: 8192 }, (req, res) => {
      const pathname = (req.url ?? '').split('?')[0];
      if (pathname !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD', connection: 'close' }).end();
        return;
      }
      let body: string;
      try {
        body = render();
      } catch (err) {
        log.log('error', 'metrics-failed', { error: (err as Error).stack });
        res.writeHead(500).end();
        return;
      }
      res.writeHead(200, { 'content-type': CONTENT_TYPE, 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
    server.maxConnections = 16;
    server.requestTimeout = 5000;
    server.headersTimeout = 5000;
    server.keepAliveTimeout = 5000;
    return new Promise((resolve) => {
      const failed = (err: NodeJS.ErrnoException) => {
        log.log('error', 'metrics-listen-failed', {
          listen: `${address.host}:${address.port}`,
          error: err.message,
          note: 'the agent runs on without its metrics endpoint; fix metrics.listen and reload',
        });
        resolve(undefined);
      };
      server.once('error', failed);
      server.listen(address.port, address.host, () => {
        server.off('error', failed);
        server.on('error', (err) => log.log('warn', 'metrics-error', { error: err.message }));
        const a = server.address() as { address: string; port: number };
        const host = a.address.includes(':') ? `[${a.address}]` : a.address;
        log.log('info', 'metrics-listening', {
          address: a.address,
          port: a.port,
          url: `http://${host}:${a.port}/metrics`,
        });
        resolve(new MetricsServer(server, a.address, a.port));
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

/** What a scrape reads: the agent's own counters, gathered at scrape time. */
export interface MetricsView {
  agentId: string;
  version: string;
  now: number;
  counters: AgentCounters;
  connected: boolean;
  inflight: number;
  /** Messages the client took from the queue to send, and that the broker acknowledged. */
  sent: number;
  acked: number;
  queue: DurableQueueStats;
  queueMaxBytes: number;
  commands: CommandCounters;
  discovery: DiscoveryCounters & { enabled: boolean };
  ports: Array<{
    name: string;
    up: boolean;
    session: SessionCounters;
    framingErrorsByKind: Partial<Record<string, number>>;
    /** Summed over the port's links (a reload that reopens a port makes a new link). */
    link: LinkCounters;
    /** A silent spell is under way (issue 19.2). */
    silent: boolean;
    /** The interval its device should report at, ms; 0: not watched. */
    expectedIntervalMs: number;
    /** A Modbus RTU line's master (issue 20). */
    modbus?: RtuMasterCounters;
  }>;
  devices: Array<{ id: string; port: string | undefined; online: boolean; counters: DeviceCounters }>;
}

const P = 'mqtt_edge_agent_';
type Kind = 'counter' | 'gauge';
type PortView = MetricsView['ports'][number];

/** Unlabelled families: name (after the prefix), type, help, value. */
const AGENT: Array<[string, Kind, string, (v: MetricsView) => number]> = [
  ['reloads_total', 'counter', 'Config reloads applied (SIGHUP).', (v) => v.counters.reloads],
  [
    'reloads_refused_total',
    'counter',
    'Config reloads refused (the new config did not validate).',
    (v) => v.counters.reloadsRefused,
  ],
  [
    'mqtt_connected',
    'gauge',
    'Whether the broker connection is up (1) or not (0).',
    (v) => (v.connected ? 1 : 0),
  ],
  [
    'mqtt_connects_total',
    'counter',
    'Broker connections made (CONNACK accepted).',
    (v) => v.counters.connects,
  ],
  [
    'mqtt_reconnects_total',
    'counter',
    'Reconnect attempts after a lost or refused connection.',
    (v) => v.counters.reconnects,
  ],
  ['mqtt_inflight_messages', 'gauge', 'QoS 1/2 publishes sent and not yet acknowledged.', (v) => v.inflight],
  [
    'mqtt_publishes_sent_total',
    'counter',
    "Messages taken from the queue and sent (readings and the agent's own); a resend after a reconnect is not counted again.",
    (v) => v.sent,
  ],
  [
    'mqtt_publishes_acked_total',
    'counter',
    'Messages the broker acknowledged (QoS 1/2) or that were written to it (QoS 0): gone from the queue.',
    (v) => v.acked,
  ],
  ['readings_published_total', 'counter', 'Readings the broker acknowledged.', (v) => v.counters.published],
  [
    'readings_refused_total',
    'counter',
    'Readings the broker refused (reason code 0x80 or more, e.g. its ACL); gone from the queue.',
    (v) => v.counters.refusedByBroker,
  ],
  [
    'control_messages_published_total',
    'counter',
    "The agent's own messages the broker took: statuses, command replies, health, discovery.",
    (v) => v.counters.controlPublished,
  ],
  [
    'publish_errors_total',
    'counter',
    "The agent's own messages that failed.",
    (v) => v.counters.publishErrors,
  ],
  [
    'queue_messages',
    'gauge',
    'Messages in the disk queue, not yet acknowledged by the broker.',
    (v) => v.queue.count,
  ],
  ['queue_bytes', 'gauge', 'Topic and payload bytes of the queued messages.', (v) => v.queue.bytes],
  ['queue_max_bytes', 'gauge', "The queue's bound (queue.maxBytes), in bytes.", (v) => v.queueMaxBytes],
  [
    'queue_oldest_age_seconds',
    'gauge',
    'Age of the oldest queued message, in seconds (0 when empty).',
    (v) => v.queue.oldestAgeMs / 1000,
  ],
  ['queue_segments', 'gauge', 'Segment files of the queue.', (v) => v.queue.segments],
  [
    'queue_write_failing',
    'gauge',
    '1 while the queue cannot write or fsync (readings refused, not ACKed), else 0.',
    (v) => (v.queue.failed ? 1 : 0),
  ],
  [
    'queue_dropped_total',
    'counter',
    'Queued readings dropped by the drop-oldest bound.',
    (v) => v.queue.droppedOldest,
  ],
  [
    'queue_rejected_total',
    'counter',
    'Readings refused by the reject-new bound (not ACKed: the device keeps them).',
    (v) => v.queue.rejectedNew,
  ],
  ['queue_write_failures_total', 'counter', 'Failed queue writes and fsyncs.', (v) => v.queue.writeFailures],
  [
    'queue_failed_puts_total',
    'counter',
    'Readings refused because a queue write failed (not ACKed).',
    (v) => v.queue.failedPuts,
  ],
  ['queue_fsyncs_total', 'counter', 'fsync calls made by the queue.', (v) => v.queue.fsyncs],
  ['commands_received_total', 'counter', 'Commands received from MQTT.', (v) => v.commands.received],
  [
    'command_errors_total',
    'counter',
    'Commands answered with an error (bad request, unknown device, timeout).',
    (v) => v.commands.errors,
  ],
  [
    'command_timeouts_total',
    'counter',
    'Commands a device did not answer in time.',
    (v) => v.commands.timeouts,
  ],
  [
    'homeassistant_enabled',
    'gauge',
    'Whether Home Assistant discovery is on.',
    (v) => (v.discovery.enabled ? 1 : 0),
  ],
  [
    'homeassistant_configs_published_total',
    'counter',
    'Home Assistant discovery configs published.',
    (v) => v.discovery.configsPublished,
  ],
  [
    'homeassistant_configs_cleared_total',
    'counter',
    'Home Assistant discovery configs cleared (empty retained payloads acknowledged).',
    (v) => v.discovery.configsCleared,
  ],
  [
    'homeassistant_births_total',
    'counter',
    'Home Assistant birth messages heard.',
    (v) => v.discovery.births,
  ],
];

/** Families with one sample per serial port (label `port`). */
const PORT: Array<[string, Kind, string, (p: PortView) => number]> = [
  ['up', 'gauge', 'Whether the serial port is open (1) or not (0).', (p) => (p.up ? 1 : 0)],
  ['received_bytes_total', 'counter', 'Bytes read from the port.', (p) => p.session.bytes],
  ['sent_bytes_total', 'counter', 'Bytes written to the port (ACKs, commands).', (p) => p.link.bytesOut],
  ['frames_total', 'counter', 'Valid frames received.', (p) => p.session.frames],
  ['readings_total', 'counter', 'Readings received in new DATA frames or lines.', (p) => p.session.readings],
  ['readings_stored_total', 'counter', 'Readings stored in the disk queue.', (p) => p.session.stored],
  [
    'readings_rejected_total',
    'counter',
    'Readings the full queue refused (reject-new; not ACKed).',
    (p) => p.session.rejected,
  ],
  [
    'store_errors_total',
    'counter',
    'Readings whose store failed (disk error; not ACKed).',
    (p) => p.session.storeErrors,
  ],
  [
    'duplicates_total',
    'counter',
    'DATA frames received again after they were stored (a lost ACK); ACKed again.',
    (p) => p.session.duplicates,
  ],
  ['acks_sent_total', 'counter', 'ACK frames written.', (p) => p.session.acksSent],
  [
    'held_sent_total',
    'counter',
    'HELD frames written (issue 18.4): DATA taken, not yet durable; the device waits for the commit.',
    (p) => p.session.heldSent,
  ],
  [
    'early_commits_total',
    'counter',
    'Commits asked for before the window ended: a device held half its ring.',
    (p) => p.session.earlyCommits,
  ],
  [
    'acks_dropped_total',
    'counter',
    'ACKs not written (port closed or backed up); the device resends.',
    (p) => p.session.acksDropped,
  ],
  [
    'unknown_device_frames_total',
    'counter',
    'DATA frames before the device said HELLO (not ACKed).',
    (p) => p.session.unknownDevice,
  ],
  [
    'overload_frames_total',
    'counter',
    'Frames dropped because too many were being stored at once.',
    (p) => p.session.overload,
  ],
  [
    'invalid_retired_total',
    'counter',
    'Intact DATA frames that can never be accepted, ACKed without storing.',
    (p) => p.session.invalidRetired,
  ],
  ['boots_total', 'counter', 'Device boots seen (new boot ids).', (p) => p.session.boots],
  ['opens_total', 'counter', 'Times the port was opened.', (p) => p.link.opens],
  ['open_failures_total', 'counter', 'Failed attempts to open the port.', (p) => p.link.openFailures],
  [
    'disconnects_total',
    'counter',
    'Times the open port closed or failed under the agent.',
    (p) => p.link.disconnects,
  ],
  [
    'write_drops_total',
    'counter',
    'Writes dropped (port not open or its write buffer full).',
    (p) => p.link.writeDrops,
  ],
  [
    'write_timeouts_total',
    'counter',
    'Writes that found no room in the tty for the port writeTimeout; the port was reopened.',
    (p) => p.link.writeTimeouts,
  ],
  [
    'expected_interval_seconds',
    'gauge',
    "The interval the port's device should report at (its HELLO p, or the config), in seconds; 0: not watched for silence.",
    (p) => p.expectedIntervalMs / 1000,
  ],
  [
    'silent',
    'gauge',
    'Whether the port is in a silent spell (1): no valid frame for longer than its interval allows.',
    (p) => (p.silent ? 1 : 0),
  ],
  [
    'silences_total',
    'counter',
    'Silent spells: the port sent nothing valid for longer than its interval allows.',
    (p) => p.session.silences,
  ],
  [
    'silence_probes_total',
    'counter',
    'HELLO requests sent to a silent port.',
    (p) => p.session.silenceProbes,
  ],
  [
    'silence_reopens_total',
    'counter',
    'Reopens of a port that stayed silent (after a HELLO request; text framings at once).',
    (p) => p.session.silenceReopens,
  ],
];

/** Families with one sample per Modbus RTU port (issue 20; label `port`). */
const MODBUS: Array<[string, string, (m: RtuMasterCounters) => number]> = [
  [
    'requests_total',
    'Modbus requests (polls and writes), each once whatever its retries.',
    (m) => m.requests,
  ],
  ['transmitted_total', 'Modbus request frames written (attempts).', (m) => m.transmitted],
  ['responses_total', 'Valid Modbus responses, exceptions included.', (m) => m.responses],
  ['exceptions_total', 'Modbus exception responses (illegal address, busy, ...).', (m) => m.exceptions],
  ['retries_total', 'Modbus attempts repeated after one got no valid response.', (m) => m.retries],
  ['failed_total', 'Modbus requests that got no valid response after all attempts.', (m) => m.failed],
  [
    'noisy_line_total',
    'Modbus requests sent without the silence before them: the line was not quiet for a response timeout.',
    (m) => m.noisyLine,
  ],
  [
    'unsolicited_bytes_total',
    'Bytes heard on a Modbus line while no request waited (noise, another master, late responses).',
    (m) => m.unsolicitedBytes,
  ],
];

/** The exposition of one scrape. Names follow Prometheus' conventions: base units, `_total` counters. */
export function renderMetrics(v: MetricsView): string {
  const e = new Exposition();
  const cpu = process.cpuUsage();
  const startedAt = Math.round(Date.now() / 1000 - process.uptime());
  e.one(
    'process_cpu_seconds_total',
    'counter',
    'User and system CPU time spent, in seconds.',
    (cpu.user + cpu.system) / 1e6,
  )
    .one(
      'process_resident_memory_bytes',
      'gauge',
      'Resident memory size, in bytes.',
      process.memoryUsage.rss(),
    )
    .one(
      'process_start_time_seconds',
      'gauge',
      'Start time of the process since the Unix epoch, in seconds.',
      startedAt,
    )
    .help(`${P}info`, 'gauge', 'The agent: its id and version (always 1).')
    .sample(1, { agent: v.agentId, version: v.version });
  for (const [name, type, help, get] of AGENT) e.one(P + name, type, help, get(v));
  for (const [name, type, help, get] of PORT) {
    e.help(`${P}port_${name}`, type, help);
    for (const p of v.ports) e.sample(get(p), { port: p.name });
  }
  e.help(
    `${P}port_framing_errors_total`,
    'counter',
    'Bad frames or lines by kind (crc, cobs, short, oversize, body, unknown-type, line-*).',
  );
  for (const p of v.ports)
    for (const [kind, n] of Object.entries(p.framingErrorsByKind)) e.sample(n ?? 0, { port: p.name, kind });

  const lines = v.ports.filter((p) => p.modbus !== undefined);
  for (const [name, help, get] of MODBUS) {
    e.help(`${P}modbus_${name}`, 'counter', help);
    for (const p of lines) e.sample(get(p.modbus as RtuMasterCounters), { port: p.name });
  }
  e.help(
    `${P}modbus_errors_total`,
    'counter',
    'Modbus requests (attempts) without a valid response, by kind (timeout, crc, unit, function, byte-count, echo, oversize, truncated, garbage).',
  );
  for (const p of lines)
    for (const [kind, n] of Object.entries((p.modbus as RtuMasterCounters).errors))
      e.sample(n ?? 0, { port: p.name, kind });
  e.help(
    `${P}device_online`,
    'gauge',
    'Whether the device is on an open port and has said who it is (1) or not (0).',
  );
  for (const d of v.devices) e.sample(d.online ? 1 : 0, { device: d.id, port: d.port ?? '' });
  e.help(`${P}device_readings_total`, 'counter', 'Readings received from the device.');
  for (const d of v.devices) e.sample(d.counters.readings, { device: d.id });
  e.help(
    `${P}device_framing_errors_total`,
    'counter',
    "Bad frames or lines on the device's port while it was there.",
  );
  for (const d of v.devices) e.sample(d.counters.framingErrors, { device: d.id });
  e.help(
    `${P}device_last_reading_timestamp_seconds`,
    'gauge',
    "When the device's last reading arrived, since the Unix epoch, in seconds.",
  );
  for (const d of v.devices)
    if (d.counters.lastReadingAt > 0) e.sample(d.counters.lastReadingAt / 1000, { device: d.id });
  e.help(`${P}device_last_reading_age_seconds`, 'gauge', "Seconds since the device's last reading.");
  for (const d of v.devices)
    if (d.counters.lastReadingAt > 0)
      e.sample(Math.max(0, v.now - d.counters.lastReadingAt) / 1000, { device: d.id });
  return e.toString();
}
