/**
 * Helpers for the bridge tests: a broker-lite in process with its bridges, and a subscriber that
 * records what it got and lets a test await a count (an event, never a sleep).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type BridgeOptions,
  type Bridges,
  Broker,
  type BrokerOptions,
  parseConfig,
  startBridges,
} from '@mqtt-edge/broker-lite';
import { connect, type MqttClient } from '@mqtt-edge/client';
import { afterEach } from 'vitest';

export interface LogLine {
  level: string;
  message: string;
  fields?: Record<string, unknown>;
}

export interface BridgedBroker {
  broker: Broker;
  bridges: Bridges;
  port: number;
  logs: LogLine[];
  dir: string;
  /** Resolves with the first log line (past or future) matching `pred`. */
  waitLog(pred: (l: LogLine) => boolean, ms?: number): Promise<LogLine>;
  close(): Promise<void>;
}

/**
 * broker-lite on an ephemeral loopback port; `conf` holds the bridge section; `options` adds to
 * (or overrides) the bridge options (a queue directory under `dir`, jitter 0.5); `brokerOptions`
 * to the broker's (persistence, limits).
 */
export async function startBridged(
  conf: string,
  dir = mkdtempSync(join(tmpdir(), 'bl-bridge-')),
  port = 0,
  options: BridgeOptions = {},
  brokerOptions: Partial<BrokerOptions> = {},
): Promise<BridgedBroker> {
  const cfg = parseConfig(`listener 0 127.0.0.1\nallow_anonymous true\n${conf}`, join(dir, 'broker.conf'));
  const logs: LogLine[] = [];
  const logWaiters = new Set<(l: LogLine) => void>();
  const broker = new Broker({
    listeners: [{ port, host: '127.0.0.1', protocol: 'mqtt' }],
    sysInterval: 0,
    allowAnonymous: true,
    ...brokerOptions,
    logger: {
      log: (level, message, fields) => {
        const l = { level, message, fields };
        logs.push(l);
        for (const w of logWaiters) w(l);
      },
    },
  });
  await broker.listen();
  const waitLog = (pred: (l: LogLine) => boolean, ms = 10_000): Promise<LogLine> => {
    const past = logs.find(pred);
    if (past) return Promise.resolve(past);
    return new Promise<LogLine>((resolve, reject) => {
      const timer = setTimeout(() => {
        logWaiters.delete(w);
        reject(new Error(`no such log line in ${ms} ms; last: ${JSON.stringify(logs.slice(-5))}`));
      }, ms);
      const w = (l: LogLine) => {
        if (!pred(l)) return;
        clearTimeout(timer);
        logWaiters.delete(w);
        resolve(l);
      };
      logWaiters.add(w);
    });
  };
  const bridges = await startBridges(broker, cfg.bridges, {
    queueDir: (name) => join(dir, 'bridges', name),
    random: () => 0.5,
    ...options,
  });
  return {
    broker,
    bridges,
    port: broker.addresses[0].port,
    logs,
    dir,
    waitLog,
    async close() {
      await bridges.close();
      await broker.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * What a test file's tests start, closed in reverse order after each test (register it once per
 * file, at its top level).
 */
export function closeAfterEach(): Array<() => unknown> {
  const closers: Array<() => unknown> = [];
  afterEach(async () => {
    for (const c of closers.reverse()) await c();
    closers.length = 0;
  });
  return closers;
}

/** A broker-lite without bridges (an upstream for the bridges under test), closed by `closers`. */
export async function startUpstream(closers: Array<() => unknown>): Promise<BridgedBroker> {
  const b = await startBridged('');
  closers.push(() => b.close());
  return b;
}

export interface Received {
  topic: string;
  payload: string;
  retain: boolean;
  qos: number;
}

/** A client that records every message and resolves waits when a predicate holds. */
export class Recorder {
  readonly got: Received[] = [];
  private waiters: Array<{ pred: () => boolean; resolve: () => void }> = [];
  constructor(readonly client: MqttClient) {
    client.on('message', (topic, payload, packet) => {
      this.got.push({
        topic,
        payload: Buffer.from(payload).toString(),
        retain: packet.retain,
        qos: packet.qos,
      });
      this.waiters = this.waiters.filter((w) => {
        if (!w.pred()) return true;
        w.resolve();
        return false;
      });
    });
  }

  static async open(
    port: number,
    filters: string[],
    options: { clientId?: string; clean?: boolean; username?: string; password?: string } = {},
  ) {
    const c = connect({ host: '127.0.0.1', port, reconnectPeriod: 100, ...options });
    const r = new Recorder(c);
    await new Promise<void>((resolve) => c.once('connect', () => resolve()));
    if (filters.length > 0) await c.subscribe(filters.map((filter) => ({ filter, qos: 1 as const })));
    return r;
  }

  on(topic: string): Received[] {
    return this.got.filter((m) => m.topic === topic);
  }

  /** Resolves when `pred` holds; rejects after `ms` naming what was received. */
  until(pred: () => boolean, what: string, ms = 10_000): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new Error(
            `timed out waiting for ${what}; got ${this.got.length}: ${JSON.stringify(this.got.slice(-5))}`,
          ),
        );
      }, ms);
      this.waiters.push({
        pred,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  end(): Promise<void> {
    return this.client.end();
  }
}

/**
 * A TCP forwarder 127.0.0.1:listenPort -> 127.0.0.1:toPort: makes an address "come up" at a
 * chosen moment, and close() cuts every connection through it without a DISCONNECT (as a lost
 * link or a killed peer would). listenPort 0 takes an ephemeral port (see `port`).
 */
export async function forwardPort(
  listenPort: number,
  toPort: number,
): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<import('node:net').Socket>();
  const server = net.createServer((a) => {
    const b = net.connect({ host: '127.0.0.1', port: toPort });
    sockets.add(a);
    sockets.add(b);
    a.pipe(b);
    b.pipe(a);
    const done = () => {
      a.destroy();
      b.destroy();
      sockets.delete(a);
      sockets.delete(b);
    };
    a.on('error', done).on('close', done);
    b.on('error', done).on('close', done);
  });
  await new Promise<void>((resolve) => server.listen(listenPort, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Resolves when `pred` holds, checked once per event-loop turn (for state no event reports). */
export async function eventually(pred: () => boolean, what: string, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * A TCP server on loopback handing each socket to `onSocket`; every socket is destroyed and the
 * server closed by `close()`, which `closers` also runs after the test.
 */
export async function tcpServer(
  closers: Array<() => unknown>,
  onSocket: (s: net.Socket) => void,
  listenPort = 0,
): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    onSocket(s);
  });
  await new Promise<void>((r) => server.listen(listenPort, '127.0.0.1', r));
  const close = () =>
    new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
  closers.push(close);
  return { port: (server.address() as net.AddressInfo).port, close };
}
