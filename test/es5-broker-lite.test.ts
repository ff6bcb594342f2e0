/**
 * Issue 21.3 against a real broker: the client core's ES5 build in Debian's Duktape (every
 * ES2015 built-in deleted first) runs a session with broker-lite over TCP on 127.0.0.1. The test
 * only carries bytes between the socket and `duk` (stdin/stdout) and passes the clock; MQTT.js
 * is the other client. Connect, subscribe, publish QoS 0/1/2 and receive QoS 0/1/2, keepalive
 * pings, a connection lost with a PUBLISH unsent and messages queued for the session while
 * away, resumed; each step's bytes and events also equal the Node core's on the same input.
 * The same runs in QuickJS (the ES2020 build).
 */
import net from 'node:net';
import { Broker } from '@mqtt-edge/broker-lite';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIENT_HARNESS, EngineSession, type Step } from '../packages/client/test/helpers/es5-session.ts';
import { buildEs5 } from '../scripts/build-es5.ts';
import { DUK, DUK_MISSING, type Engine, startDuk, startQuickJS } from './helpers/engines.ts';

if (DUK === null) console.warn(DUK_MISSING);

let broker: Broker;
let port: number;
beforeAll(async () => {
  broker = new Broker({
    listeners: [{ port: 0, host: '127.0.0.1', protocol: 'mqtt' }],
    sysInterval: 0,
    allowAnonymous: true,
    authFailureDelayMs: 0,
  });
  await broker.listen();
  port = broker.addresses[0].port;
});
afterAll(() => broker.close());

// biome-ignore lint/suspicious/noExplicitAny: events as JSON
type Event = any;

/** Waiting on a condition that is checked whenever something it reads changes. */
class Changes {
  private waiters: Array<() => void> = [];

  notify(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  until(what: string, pred: () => boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      const timeout = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 10_000);
      const check = () => {
        if (pred()) {
          clearTimeout(timeout);
          resolve();
        } else this.waiters.push(check);
      };
      check();
    });
  }
}

/**
 * One TCP connection between broker-lite and the session inside the engine: received bytes go
 * in as `rx`, what the session writes goes out, a timer calls `tick` at its deadline.
 */
class Link {
  readonly events: Event[] = [];
  readonly sent: string[] = [];
  private socket: net.Socket | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private readonly changes = new Changes();
  /** The next output is lost in transit (written nowhere). */
  dropNextOutput = false;

  constructor(private readonly s: EngineSession) {}

  /** Runs a command in order with the others and forwards what it wrote. */
  // biome-ignore lint/suspicious/noExplicitAny: JSON arguments
  cmd(name: string, args: Record<string, any> = {}): Promise<Step> {
    const run = this.queue.then(async () => {
      const step = await this.s.cmd(name, { ...args, now: Date.now() });
      for (const p of step.packets) this.sent.push(p.type);
      if (step.out !== '' && this.socket !== null && !this.dropNextOutput)
        this.socket.write(Buffer.from(step.out, 'hex'));
      this.dropNextOutput = false;
      this.events.push(...step.events);
      this.schedule(step.deadline);
      this.changes.notify();
      return step;
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private schedule(deadline: number | null | undefined): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (typeof deadline === 'number')
      this.timer = setTimeout(() => void this.cmd('tick'), Math.max(0, deadline - Date.now()));
  }

  async open(): Promise<void> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    this.socket = socket;
    socket.on('data', (d: Buffer) => void this.cmd('rx', { hex: d.toString('hex') }));
    socket.on('close', () => {
      if (this.socket === socket) void this.cmd('lost');
    });
    await this.cmd('open');
  }

  /** The connection breaks (the socket is destroyed; the session is told). */
  async drop(): Promise<void> {
    const socket = this.socket;
    this.socket = null;
    socket?.destroy();
    await this.cmd('lost');
    if (this.timer !== null) clearTimeout(this.timer);
  }

  /** Resolves once `pred` holds over the events (checked after every command), within 10 s. */
  until(what: string, pred: (events: Event[], sent: string[]) => boolean): Promise<void> {
    return this.changes.until(what, () => pred(this.events, this.sent));
  }

  close(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.socket?.destroy();
    this.socket = null;
  }
}

const count = (events: Event[], type: string, f: (e: Event) => boolean = () => true) =>
  events.filter((e) => e.type === type && f(e)).length;
const hexOf = (s: string) => Buffer.from(s).toString('hex');
const fromHex = (h: string) => Buffer.from(h.slice('hex:'.length), 'hex').toString();

const ENGINES = [
  { name: 'Duktape (ES5 build, ES5.1-only built-ins)', build: 'es5', engine: 'duktape' },
  { name: 'QuickJS (ES2020 build)', build: 'es2020', engine: 'quickjs' },
] as const;

for (const e of ENGINES) {
  describe.skipIf(e.engine === 'duktape' && DUK === null)(
    `issue 21.3: a session with broker-lite from ${e.name}`,
    () => {
      for (const v of [4, 5] as const)
        it(`MQTT ${v === 5 ? '5.0' : '3.1.1'}: connect, subscribe, QoS 0/1/2 both ways, pings, resume after a lost connection`, async () => {
          const { code } = await buildEs5('client-core', { target: e.build });
          const scripts = [
            { name: 'client-core.js', code },
            { name: 'harness.js', code: CLIENT_HARNESS },
          ];
          const engine: Engine =
            e.engine === 'duktape' ? await startDuk(scripts) : await startQuickJS(scripts);
          const clientId = `es5-${e.engine}-${v}`;
          const link = new Link(new EngineSession(engine, v, true));
          const peer = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
            protocolVersion: v,
            clientId: `${clientId}-peer`,
            reconnectPeriod: 0,
          });
          try {
            const got: Array<[string, string, number]> = [];
            const received = new Changes();
            peer.on('message', (topic, payload, packet) => {
              got.push([topic, payload.toString(), packet.qos]);
              received.notify();
            });
            await peer.subscribeAsync(`${clientId}/out/#`, { qos: 2 });

            await link.cmd('create', {
              options: {
                protocolVersion: v,
                clientId,
                keepalive: 2,
                // 3.1.1: a clean session ends with its connection, so this one never is
                ...(v === 5 ? { clean: 'first', sessionExpiryInterval: 60 } : { clean: false }),
              },
            });
            await link.open();
            await link.until('connected', (ev) => count(ev, 'connected') === 1);
            await link.cmd('subscribe', { subscriptions: [{ topicFilter: `${clientId}/in/#`, qos: 2 }] });
            await link.until('suback', (ev) => count(ev, 'suback') === 1);
            expect(link.events.find((x) => x.type === 'suback').reasonCodes).toEqual([2]);

            // Ours to the peer: QoS 0, 1, 2
            for (const qos of [0, 1, 2])
              await link.cmd('publish', { topic: `${clientId}/out/${qos}`, payload: hexOf(`m${qos}`), qos });
            await link.until(
              'PUBACK and PUBCOMP',
              (ev) => count(ev, 'published', (x) => x.reasonCode === 0) === 2,
            );
            await received.until('the peer to receive three', () => got.length === 3);
            expect(got.sort()).toEqual([
              [`${clientId}/out/0`, 'm0', 0],
              [`${clientId}/out/1`, 'm1', 1],
              [`${clientId}/out/2`, 'm2', 2],
            ]);

            // The peer's to ours: QoS 0, 1, 2 (the QoS 2 handshake runs through the link)
            for (const qos of [0, 1, 2] as const)
              await peer.publishAsync(`${clientId}/in/${qos}`, `p${qos}`, { qos });
            await link.until('three messages', (ev) => count(ev, 'message') === 3);
            const messages = link.events.filter((x) => x.type === 'message').map((x) => x.packet);
            expect(messages.map((p) => [p.topic, fromHex(p.payload), p.qos]).sort()).toEqual([
              [`${clientId}/in/0`, 'p0', 0],
              [`${clientId}/in/1`, 'p1', 1],
              [`${clientId}/in/2`, 'p2', 2],
            ]);
            await link.until('PUBACK, PUBREC, PUBCOMP sent', (_ev, sent) => sent.includes('pubcomp'));

            // Keepalive 2 s: two PINGREQs, so the first was answered (else the session fails at 3 s)
            await link.until('two pings', (_ev, sent) => sent.filter((t) => t === 'pingreq').length >= 2);
            expect(count(link.events, 'closed')).toBe(0);

            // A QoS 1 PUBLISH lost with the connection, a message queued for the session meanwhile
            link.dropNextOutput = true;
            const ticket = await link.cmd('publish', {
              topic: `${clientId}/out/late`,
              payload: hexOf('late'),
              qos: 1,
            });
            expect(ticket.packets.map((p) => p.type)).toEqual(['publish']);
            await link.drop();
            expect(link.events.at(-1)).toMatchObject({ type: 'closed', by: 'transport' });
            await peer.publishAsync(`${clientId}/in/away`, 'while away', { qos: 1 });
            await link.open();
            await link.until('resumed', (ev) => count(ev, 'connected', (x) => x.sessionPresent) === 1);
            await link.until('the lost PUBLISH acknowledged', (ev) => count(ev, 'published') === 3);
            await received.until('the peer to receive the resent one', () =>
              got.some(([t]) => t.endsWith('/late')),
            );
            await link.until('the queued message', (ev) => count(ev, 'message') === 4);
            expect(fromHex(link.events.filter((x) => x.type === 'message')[3].packet.payload)).toBe(
              'while away',
            );

            await link.cmd('disconnect');
            expect(link.events.at(-1)).toMatchObject({ type: 'closed', by: 'client' });
          } finally {
            link.close();
            engine.close();
            await peer.endAsync();
          }
        }, 60_000);
    },
  );
}
