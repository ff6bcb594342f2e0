/**
 * Issue 15.2: `log_dest topic`, `log_dest syslog` (`log_facility`), `log_timestamp_format`.
 *
 * - topic: each line a QoS 2, not retained message on Mosquitto's `$SYS/broker/log/<E W N I>`,
 *   `M/subscribe`, `M/unsubscribe` (debug lines never: Mosquitto does the same), with a message
 *   expiry of 20 s, the payload Mosquitto's `TIMESTAMP: text`. A line logged while a log line is
 *   being published is not published (no loops), and a flood is bounded (200 lines a second, the
 *   rest counted and summed up in one W line a second).
 * - syslog: one datagram per line to the local syslog socket, `<PRI>` from `log_facility` (daemon
 *   by default, local0..local7) and the line's level, tagged `broker-lite[PID]`; received here by
 *   a real unix datagram socket the test binds (python3), never a syslog daemon.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { functionDestination } from '@mqtt-edge/log';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Broker } from '../src/broker.ts';
import { type BrokerConfig, ConfigError, parseConfig } from '../src/config.ts';
import { describeConfig, loadSecurity } from '../src/config-build.ts';
import { createLogger, type Logger } from '../src/log.ts';
import { LOG_TOPIC_RATE } from '../src/log-topic.ts';
import { BrokerProcess } from './helpers/broker-process.ts';
import { RawClient, text } from './helpers/raw-client.ts';

const FILE = '/etc/mosquitto/mosquitto.conf';
const parse = (t: string): BrokerConfig => parseConfig(t, FILE);

const dirs: string[] = [];
const scratch = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'bl-logdest-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('issue 15.2: log_dest syslog|topic, log_facility, log_timestamp_format in the config', () => {
  it('issue 15.2: are read, not warned about, and shown by check', async () => {
    const c = parse(
      'log_dest syslog\nlog_dest topic\nlog_dest stderr\nlog_facility 5\nlog_timestamp_format %Y-%m-%d %H:%M:%S\n',
    );
    expect(c.logDest).toEqual([
      { kind: 'syslog', file: FILE, line: 1 },
      { kind: 'topic' },
      { kind: 'stderr' },
    ]);
    expect(c.logFacility).toBe(5);
    expect(c.logTimestampFormat).toBe('%Y-%m-%d %H:%M:%S');
    expect(c.warnings).toEqual([]);
    // broker-lite check shows them.
    const shown = describeConfig(c, await loadSecurity(c));
    expect(shown).toContain('log_dest syslog, topic, stderr\n');
    expect(shown).toContain('log_timestamp_format %Y-%m-%d %H:%M:%S\n');
    expect(shown).toContain('log_facility local5\n');
    expect(shown).toContain('log_syslog_socket /dev/log\n');
    expect(parse('log_dest syslog\n').logSyslogSocket).toBe('/dev/log');
    expect(parse('log_syslog_socket /run/systemd/journal/dev-log\n').logSyslogSocket).toBe(
      '/run/systemd/journal/dev-log',
    );
  });

  it('issue 15.2: a bad log_facility or format is an error naming file, line and key', () => {
    const bad: Array<[string, RegExp]> = [
      ['log_facility 8', /out of range/],
      ['log_facility local0', /integer/],
      ['log_timestamp_format %Y-%Q', /unsupported conversion '%Q'/],
      ['log_timestamp_format', /missing value/],
    ];
    for (const [line, why] of bad) {
      let err: unknown;
      try {
        parse(`${line}\n`);
      } catch (e) {
        err = e;
      }
      expect(err, line).toBeInstanceOf(ConfigError);
      expect(String((err as Error).message), line).toMatch(why);
      expect((err as ConfigError).key, line).toBe(line.split(' ')[0]);
    }
  });
});

interface Logged {
  broker: Broker;
  logger: Logger;
  port: number;
  lines: string[];
  close(): Promise<void>;
}

/** A broker whose logger (as the CLI makes it) has the topic destination and a function one. */
async function topicBroker(extra: Partial<Parameters<typeof createLogger>[0]> = {}): Promise<Logged> {
  const lines: string[] = [];
  const logger = createLogger({
    types: ['error', 'warning', 'notice', 'information', 'debug', 'subscribe', 'unsubscribe'],
    destinations: [functionDestination((l) => lines.push(l))],
    format: 'json',
    timestamp: true,
    topic: true,
    ...extra,
  });
  const broker = new Broker({
    listeners: [{ port: 0, host: '127.0.0.1', protocol: 'mqtt' }],
    sysInterval: 0,
    authFailureDelayMs: 0,
    logger,
  });
  logger.attachBroker(broker);
  await broker.listen();
  return {
    broker,
    logger,
    port: broker.addresses[0].port,
    lines,
    close: async () => {
      logger.attachBroker(null);
      await broker.close();
    },
  };
}

let tb: Logged | undefined;
afterEach(async () => {
  await tb?.close();
  tb = undefined;
});

describe('issue 15.2: log_dest topic', () => {
  it('issue 15.2: lines go to $SYS/broker/log/<level> as Mosquitto names them, QoS 2, 20 s expiry, no debug', async () => {
    tb = await topicBroker({ now: () => new Date(1_765_000_000_123) });
    const { client: watcher } = await RawClient.connect(tb.port, { clientId: 'watcher', protocolVersion: 5 });
    expect(await watcher.subscribe('$SYS/broker/log/#', 2)).toEqual([2]);
    // Its own SUBSCRIBE is a subscribe line: Mosquitto's "CLIENTID QOS FILTER".
    const sub = await watcher.expect('publish');
    expect(sub.topic).toBe('$SYS/broker/log/M/subscribe');
    expect(text(sub)).toBe('1765000000: watcher 2 $SYS/broker/log/#');
    expect(sub.qos).toBe(2);
    expect(sub.retain).toBe(false);
    expect(sub.properties?.messageExpiryInterval).toBe(20);
    watcher.send({ type: 'pubrec', packetId: sub.packetId as number });
    await watcher.expect('pubrel');
    watcher.send({ type: 'pubcomp', packetId: sub.packetId as number });

    const { client: other } = await RawClient.connect(tb.port, { clientId: 'dev-7' });
    const connected = await watcher.expect('publish');
    // A notice, as Mosquitto's "New client connected".
    expect(connected.topic).toBe('$SYS/broker/log/N');
    expect(text(connected)).toMatch(/^1765000000: client connected clientId=dev-7 /);
    watcher.send({ type: 'pubrec', packetId: connected.packetId as number });
    await watcher.expect('pubrel');
    watcher.send({ type: 'pubcomp', packetId: connected.packetId as number });
    const before = tb.lines.length;
    other.send({ type: 'unsubscribe', packetId: 3, topicFilters: ['x/y'] });
    await other.expect('unsuback');
    const unsub = await watcher.expect('publish');
    expect([unsub.topic, text(unsub)]).toEqual(['$SYS/broker/log/M/unsubscribe', '1765000000: dev-7 x/y']);
    tb.logger.log('debug', 'a debug line');
    tb.logger.log('warning', 'a warning', { n: 1 });
    tb.logger.log('error', 'an error');
    tb.logger.log('notice', 'a notice');
    const rest: string[] = [];
    for (let i = 0; i < 3; i++) {
      const p = await watcher.expect('publish');
      rest.push(`${p.topic} ${text(p)}`);
      watcher.send({ type: 'pubrec', packetId: p.packetId as number });
    }
    expect(rest).toEqual([
      '$SYS/broker/log/W 1765000000: a warning n=1',
      '$SYS/broker/log/E 1765000000: an error',
      '$SYS/broker/log/N 1765000000: a notice',
    ]);
    // Every line reached the other destination, the debug one too.
    expect(tb.lines.slice(before).some((l) => l.includes('a debug line'))).toBe(true);
    await other.disconnect();
    await watcher.disconnect();
  });

  it('issue 15.2: log_timestamp_format sets the payload timestamp; log_timestamp false drops it', async () => {
    process.env.TZ = 'UTC';
    tb = await topicBroker({
      timestampFormat: '%Y-%m-%dT%H:%M:%S',
      now: () => new Date(Date.UTC(2026, 11, 7, 5, 54)),
    });
    const { client: w } = await RawClient.connect(tb.port, { clientId: 'w' });
    await w.subscribe('$SYS/broker/log/N', 0);
    tb.logger.log('notice', 'stamped');
    expect(text(await w.expect('publish'))).toBe('2026-12-07T05:54:00: stamped');
    // Text lines on the other destinations take the same format.
    const textLines: string[] = [];
    const t = createLogger({
      types: ['notice'],
      destinations: [functionDestination((l) => textLines.push(l))],
      format: 'text',
      timestamp: true,
      timestampFormat: '%Y-%m-%dT%H:%M:%S',
      now: () => new Date(Date.UTC(2026, 11, 7, 5, 54)),
    });
    t.log('notice', 'on a terminal');
    expect(textLines).toEqual(['2026-12-07T05:54:00 notice  on a terminal']);
    await w.disconnect();
    await tb.close();
    tb = await topicBroker({ timestamp: false });
    const { client: w2 } = await RawClient.connect(tb.port, { clientId: 'w2' });
    await w2.subscribe('$SYS/broker/log/N', 0);
    tb.logger.log('notice', 'no stamp');
    expect(text(await w2.expect('publish'))).toBe('no stamp');
    await w2.disconnect();
  });

  it('issue 15.2: a line logged while a log line is published is not published (no loop)', async () => {
    // An ACL whose read check throws for log topics: routing each log line logs an error
    // ("delivery failed"), which, published, would log another, without end.
    tb = await topicBroker();
    tb.broker.setSecurity(undefined, {
      allowed(action, _client, topic) {
        if (action === 'read' && topic.startsWith('$SYS/broker/log/')) throw new Error('backend down');
        return true;
      },
    });
    const { client: w } = await RawClient.connect(tb.port, { clientId: 'w' });
    await w.subscribe('$SYS/broker/log/#', 0);
    await w.silent(50);
    const published = tb.logger.topicStats().published;
    const logged = tb.lines.length;
    tb.logger.log('notice', 'the first line');
    // The line is published on the next microtask; give the loop that would follow time to run.
    await w.silent(300);
    const st = tb.logger.topicStats();
    expect(st.published - published).toBe(1);
    expect(st.suppressed).toBeGreaterThanOrEqual(1);
    const errors = tb.lines.slice(logged).filter((l) => l.includes('delivery failed'));
    expect(errors.length).toBe(1);
    await w.disconnect();
  });

  it(`issue 15.2: a flood publishes at most ${LOG_TOPIC_RATE} lines a second, then one summary line`, async () => {
    tb = await topicBroker();
    const { client: w } = await RawClient.connect(tb.port, { clientId: 'w' });
    await w.subscribe('$SYS/broker/log/#', 0);
    await w.silent(50);
    const start = tb.logger.topicStats();
    const t0 = performance.now();
    for (let i = 0; i < 20_000; i++) tb.logger.log('notice', `flood ${i}`);
    const seconds = (performance.now() - t0) / 1000;
    const got: string[] = [];
    for (;;) {
      const p = await w.next(1500);
      if (p === null) break;
      if (p.type === 'publish') got.push(`${p.topic} ${text(p)}`);
      if (got.some((g) => g.includes('not published'))) break;
    }
    const floods = got.filter((g) => g.includes(': flood '));
    expect(floods.length).toBeGreaterThan(0);
    // The burst, and what the bucket refilled while the loop ran.
    expect(floods.length).toBeLessThanOrEqual(Math.ceil(LOG_TOPIC_RATE * (1 + seconds)));
    const summary = got.find((g) => g.includes('not published'));
    expect(summary).toMatch(
      new RegExp(
        `^\\$SYS/broker/log/W \\d+: ${20_000 - floods.length} log lines not published to \\$SYS/broker/log`,
      ),
    );
    expect(tb.logger.topicStats().dropped - start.dropped).toBe(20_000 - floods.length);
    // Every line is still in the other destinations.
    expect(tb.lines.filter((l) => l.includes('"flood ')).length).toBe(20_000);
    await w.disconnect();
  });
});

// ---- syslog -------------------------------------------------------------------------------------

const PYTHON = '/usr/bin/python3';
const hasPython = spawnSync(PYTHON, ['-c', 'import socket'], { stdio: 'ignore' }).status === 0;
const hasLogger = spawnSync('logger', ['--help'], { stdio: 'ignore' }).status === 0;
if (!hasPython || !hasLogger)
  console.warn(
    `issue 15.2 syslog tests skipped: ${!hasPython ? '/usr/bin/python3' : 'logger (util-linux)'} missing`,
  );

/** A unix datagram socket bound at `path`, as a syslog daemon binds /dev/log; each datagram a line. */
class DatagramSink {
  readonly datagrams: string[] = [];
  private waiters: Array<() => void> = [];
  private readonly child: ChildProcess;
  readonly ready: Promise<void>;

  constructor(readonly path: string) {
    const script = [
      'import socket, sys, json',
      's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
      's.bind(sys.argv[1])',
      'print("ready", flush=True)',
      'while True:',
      '    print(json.dumps(s.recv(65536).decode("utf-8", "replace")), flush=True)',
    ].join('\n');
    this.child = spawn(PYTHON, ['-c', script, path], { stdio: ['ignore', 'pipe', 'inherit'] });
    const rl = createInterface({ input: this.child.stdout as NodeJS.ReadableStream });
    this.ready = new Promise((resolve) => {
      rl.on('line', (l) => {
        if (l === 'ready') return resolve();
        this.datagrams.push(JSON.parse(l) as string);
        for (const w of this.waiters.splice(0)) w();
      });
    });
  }

  async waitFor(pred: (d: string) => boolean, ms = 10_000): Promise<string> {
    const end = Date.now() + ms;
    for (;;) {
      const hit = this.datagrams.find(pred);
      if (hit !== undefined) return hit;
      const left = end - Date.now();
      if (left <= 0) throw new Error(`no such datagram in ${ms} ms; got:\n${this.datagrams.join('\n')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGKILL');
    await gone;
    rmSync(this.path, { force: true });
  }
}

const procs: BrokerProcess[] = [];
const sinks: DatagramSink[] = [];
afterAll(async () => {
  for (const p of procs) await p.stop();
  for (const s of sinks) await s.stop();
});

describe.skipIf(!hasPython || !hasLogger)('issue 15.2: log_dest syslog', () => {
  it('issue 15.2: each line a datagram: <facility*8+severity>, tag broker-lite[PID], the Mosquitto line', async () => {
    const dir = scratch();
    const sock = join(dir, 'log.sock');
    const sink = new DatagramSink(sock);
    sinks.push(sink);
    await sink.ready;
    const p = await BrokerProcess.startText(
      `log_dest syslog\nlog_dest stderr\nlog_facility 3\nlog_syslog_socket ${sock}\nlog_type all\nlog_timestamp_format %Y-%m-%dT%H:%M:%S\n`,
    );
    procs.push(p);
    // local3 is facility 19: notice (5) is <157>, information (6) <158>, debug (7) <159>.
    const ready = await sink.waitFor((d) => d.includes(': ready '));
    expect(ready).toMatch(
      new RegExp(
        `^<157>\\w{3} [ \\d]\\d \\d\\d:\\d\\d:\\d\\d broker-lite\\[${p.pid}\\]: \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d: ready pid=${p.pid} `,
      ),
    );
    const { client } = await RawClient.connect(p.port, { clientId: 'sys-log-1' });
    await client.subscribe('a/b', 1);
    const line = await sink.waitFor((d) => d.includes('client connected clientId=sys-log-1'));
    expect(line.startsWith('<157>')).toBe(true);
    // Mosquitto files subscribe lines under notice.
    expect(await sink.waitFor((d) => d.includes(': sys-log-1 1 a/b'))).toMatch(/^<157>/);
    // A client id with a newline cannot forge a second syslog line.
    const { client: forger } = await RawClient.connect(p.port, { clientId: 'x\n<11>forged' });
    const forged = await sink.waitFor((d) => d.includes('forged'));
    expect(forged).toContain('x\\n<11>forged');
    await forger.disconnect();
    await client.disconnect();
    expect((await p.stop()).code).toBe(0);
  });

  it('issue 15.2: the daemon away at start, then restarted: lines go out once its socket is back', async () => {
    const dir = scratch();
    const sock = join(dir, 'log.sock');
    // No socket yet: the broker starts and says so once (the lines meanwhile are lost, as with syslog(3)).
    const p = await BrokerProcess.startText(`log_dest syslog\nlog_dest stderr\nlog_syslog_socket ${sock}\n`);
    procs.push(p);
    await p.waitFor((l) => l.level === 'warning' && /syslog socket/.test(l.msg));
    const sink = new DatagramSink(sock);
    sinks.push(sink);
    await sink.ready;
    const { client } = await RawClient.connect(p.port, { clientId: 'after-start' });
    // daemon facility (3): notice is <29>.
    expect(await sink.waitFor((d) => d.includes('clientId=after-start'))).toMatch(/^<29>/);
    await client.disconnect();
    // The daemon restarts: a new socket at the same path.
    await sink.stop();
    const again = new DatagramSink(sock);
    sinks.push(again);
    await again.ready;
    // A line or two may go to the old socket before the restart is noticed: log until one arrives.
    let n = 0;
    const arrived = again.waitFor((d) => d.includes('clientId=after-restart-'));
    for (let tries = 0; tries < 20 && again.datagrams.length === 0; tries++) {
      const { client: c } = await RawClient.connect(p.port, { clientId: `after-restart-${n++}` });
      await c.disconnect();
      await new Promise<void>((r) => setTimeout(r, 100));
    }
    expect(await arrived).toMatch(/^<29>/);
    expect((await p.stop()).code).toBe(0);
  });

  it('issue 15.2: without the logger command, log_dest syslog is a config error at start', () => {
    const dir = scratch();
    const conf = join(dir, 'b.conf');
    writeFileSync(conf, 'listener 0 127.0.0.1\nlog_dest syslog\n');
    const bin = new URL('../bin/broker-lite.js', import.meta.url).pathname;
    const r = spawnSync(process.execPath, [bin, '-c', conf], {
      env: { ...process.env, PATH: dir },
      encoding: 'utf8',
    });
    expect(r.status).toBe(3);
    expect(r.stderr).toContain(`${conf}:2: log_dest: syslog needs the logger command`);
  });
});
