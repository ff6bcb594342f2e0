/**
 * Runs one scenario against one broker (and its bridge's remote) and writes the transcript: for
 * each step a header, then what every client observed while the step ran, as lines
 * `STEP CLIENT: OBSERVATION`. After each step (but those that end a connection) the run settles:
 * every connected client sends PINGREQ in turn, and rounds repeat until one brings no packet
 * but PINGRESPs. A broker answers a client's packets in order, so by then everything the step
 * caused has arrived: deliveries are compared, not raced. Within a step a client's deliveries
 * are sorted by topic (stable: one topic's order is kept), as the spec orders per topic only.
 */
import { type ConnectPacket, type QoS, utf8Encode } from '@mqtt-edge/codec';
import { DiffClient, type Observation } from './client.ts';
import type { Scenario, Server, Step } from './types.ts';

export interface Ports {
  local: number;
  remote?: number;
}

/** One settle round per this many ms at most; a broker that answers no PINGREQ is observed. */
const PING_MS = 3000;
const ACK_MS = 3000;
const CONNACK_MS = 3000;
const WAIT_MS = 5000;
/** A broker that keeps sending after this many rounds is observed as not settling. */
const MAX_ROUNDS = 100;

export function describeStep(s: Step): string {
  switch (s.op) {
    case 'connect': {
      const parts = [`v${s.version === 5 ? '5' : '3.1.1'}`];
      if (s.clientId !== undefined) parts.push(`id=${JSON.stringify(s.clientId)}`);
      if (s.clean === false) parts.push('clean=0');
      if (s.username !== undefined) parts.push(`user=${s.username}`);
      if (s.password !== undefined) parts.push('password');
      if (s.will !== undefined) parts.push(`will=${s.will.topic}${s.will.retain ? ' (retain)' : ''}`);
      if (s.properties !== undefined) parts.push(JSON.stringify(s.properties));
      if (s.server === 'remote') parts.push('to the remote');
      return `connect ${s.client} ${parts.join(' ')}`;
    }
    case 'subscribe':
      return `subscribe ${s.client} ${s.filters
        .map((f) =>
          typeof f === 'string'
            ? `${f}@2`
            : `${f.filter}@${f.qos ?? 2}${f.noLocal ? ' nl' : ''}${f.retainAsPublished ? ' rap' : ''}${f.rh ? ` rh=${f.rh}` : ''}`,
        )
        .join(', ')}`;
    case 'unsubscribe':
      return `unsubscribe ${s.client} ${s.filters.join(', ')}`;
    case 'publish': {
      const body = s.size !== undefined ? `<${s.size} bytes>` : JSON.stringify(s.payload ?? '');
      const times = s.repeat !== undefined && s.repeat > 1 ? ` x${s.repeat}` : '';
      return `publish ${s.client} ${s.topic} q${s.qos ?? 0}${s.retain ? ' retain' : ''} ${body}${times}`;
    }
    case 'disconnect':
      return `disconnect ${s.client}${s.reason !== undefined ? ` reason 0x${s.reason.toString(16)}` : ''}`;
    case 'drop':
      return `drop ${s.client} (no DISCONNECT)`;
    case 'wait':
      return `wait for ${s.client} to get ${s.topic}${s.payload !== undefined ? ` ${JSON.stringify(s.payload)}` : ''}`;
    case 'waitClose':
      return `wait for ${s.client} to be closed`;
    case 'acks':
      return `${s.client} acks ${s.mode}`;
    case 'elapse':
      return `${s.ms} ms pass`;
    case 'sysTopics':
      return `${s.client} lists ${s.filter ?? '$SYS/#'}`;
  }
}

class ScenarioRun {
  private readonly clients = new Map<string, DiffClient>();
  private readonly lines: string[] = [];
  /** Per client, the deliveries seen since the scenario began, for wait steps. */
  private readonly seen = new Map<string, Observation[]>();

  /** asyncDeliveries: each client's deliveries, reported after the last step. */
  private readonly late = new Map<string, Observation[]>();

  constructor(
    private readonly ports: Ports,
    private readonly scenario: Scenario,
    private readonly asyncDeliveries: boolean,
  ) {}

  private client(name: string): DiffClient {
    const c = this.clients.get(name);
    if (c === undefined) throw new Error(`scenario ${this.scenario.id}: no client '${name}' connected yet`);
    return c;
  }

  private port(server: Server | undefined): number {
    if (server !== 'remote') return this.ports.local;
    if (this.ports.remote === undefined) throw new Error(`scenario ${this.scenario.id}: no remote broker`);
    return this.ports.remote;
  }

  async run(): Promise<string[]> {
    try {
      for (const [i, step] of this.scenario.steps.entries()) {
        const n = i + 1;
        this.lines.push(`${n} > ${describeStep(step)}`);
        await this.step(step, n);
        if (step.op !== 'drop' && step.op !== 'disconnect') await this.settle(n);
        this.collect(n);
      }
    } finally {
      for (const c of this.clients.values()) c.drop();
    }
    for (const name of [...this.late.keys()].sort())
      for (const o of sortDeliveries(this.late.get(name)!)) this.lines.push(`* ${name}: ${o.line}`);
    return this.lines;
  }

  /** Moves what each client observed into the transcript under step `n`. */
  private collect(n: number): void {
    for (const name of [...this.clients.keys()].sort()) {
      const obs = this.clients.get(name)!.take();
      const seen = this.seen.get(name) ?? [];
      for (const o of obs) if (o.delivery) seen.push(o);
      this.seen.set(name, seen);
      const plain = obs.filter((o) => !o.delivery);
      let deliveries = obs.filter((o) => o.delivery);
      if (this.asyncDeliveries) {
        this.late.set(name, [...(this.late.get(name) ?? []), ...deliveries]);
        deliveries = [];
      }
      for (const o of [...plain, ...sortDeliveries(deliveries)]) this.lines.push(`${n} ${name}: ${o.line}`);
    }
  }

  private async settle(n: number): Promise<void> {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      let moved = 0;
      for (const c of this.clients.values()) {
        // The broker is not reading it (a request went unanswered): a ping would only time out.
        if (c.stalled) continue;
        const before = c.received;
        await c.ping(PING_MS);
        moved += c.received - before;
      }
      if (moved === 0) return;
    }
    this.lines.push(`${n} (the broker did not settle in ${MAX_ROUNDS} rounds)`);
  }

  private async step(s: Step, n: number): Promise<void> {
    switch (s.op) {
      case 'connect': {
        const old = this.clients.get(s.client);
        if (old !== undefined && !old.isClosed) old.drop();
        const c = await DiffClient.open(this.port(s.server));
        this.clients.set(s.client, c);
        const packet: ConnectPacket = {
          type: 'connect',
          protocolVersion: s.version ?? 4,
          clientId: s.clientId ?? s.client,
          clean: s.clean ?? true,
          keepalive: s.keepalive ?? 60,
        };
        if (s.username !== undefined) packet.username = s.username;
        if (s.password !== undefined) packet.password = utf8Encode(s.password);
        if (s.properties !== undefined) packet.properties = s.properties;
        if (s.will !== undefined)
          packet.will = {
            topic: s.will.topic,
            payload: utf8Encode(s.will.payload),
            qos: s.will.qos ?? 0,
            retain: s.will.retain ?? false,
            properties: s.will.properties,
          };
        await c.connect(packet, CONNACK_MS);
        return;
      }
      case 'subscribe':
        await this.client(s.client).subscribe(
          s.filters.map((f) =>
            typeof f === 'string'
              ? { topicFilter: f, qos: 2 as QoS }
              : {
                  topicFilter: f.filter,
                  qos: f.qos ?? 2,
                  noLocal: f.noLocal,
                  retainAsPublished: f.retainAsPublished,
                  retainHandling: f.rh,
                },
          ),
          s.properties,
        );
        return;
      case 'unsubscribe':
        await this.client(s.client).unsubscribe(s.filters);
        return;
      case 'publish': {
        const c = this.client(s.client);
        const payload = s.size !== undefined ? Buffer.alloc(s.size, 'x') : utf8Encode(s.payload ?? '');
        // A publisher whose acknowledgement does not come stops there, as a real one would.
        for (let i = 0; i < (s.repeat ?? 1); i++) {
          const answered = await c.publish(
            { topic: s.topic, payload, qos: s.qos ?? 0, retain: s.retain ?? false, properties: s.properties },
            s.ackTimeoutMs ?? ACK_MS,
          );
          if (!answered) break;
        }
        return;
      }
      case 'disconnect':
        await this.client(s.client).disconnect(s.reason, s.properties, ACK_MS);
        return;
      case 'drop':
        this.client(s.client).drop();
        return;
      case 'wait': {
        // What arrived in an earlier step counts too: the wait is for the event, not its timing.
        const c = this.client(s.client);
        const match = (topic: string | undefined, payload: string | undefined) =>
          topic === s.topic && (s.payload === undefined || payload === s.payload);
        const before = [...(this.seen.get(s.client) ?? []), ...c.peek()];
        if (before.some((o) => o.delivery && match(o.topic, o.payload))) return;
        const got = await c.waitFor(
          (p) => p.type === 'publish' && match(p.topic, Buffer.from(p.payload).toString('utf8')),
          s.timeoutMs ?? WAIT_MS,
        );
        if (got === 'timeout') this.lines.push(`${n} ${s.client}: timeout`);
        return;
      }
      case 'waitClose': {
        const got = await this.client(s.client).waitFor(() => false, s.timeoutMs ?? WAIT_MS);
        if (got === 'timeout') this.lines.push(`${n} ${s.client}: timeout`);
        return;
      }
      case 'acks':
        this.client(s.client).setAcks(s.mode);
        return;
      case 'elapse':
        await new Promise((r) => setTimeout(r, s.ms));
        return;
      case 'sysTopics': {
        const c = this.client(s.client);
        const filter = s.filter ?? '$SYS/#';
        await c.subscribe([{ topicFilter: filter, qos: 0 }]);
        await this.settle(n);
        const obs = c.take();
        const names = new Set<string>();
        for (const o of obs) {
          if (o.delivery && o.topic?.startsWith('$SYS/')) names.add(o.topic);
          else this.lines.push(`${n} ${s.client}: ${o.line}`);
        }
        this.lines.push(`${n} ${s.client}: $SYS topics ${[...names].sort(cmp).join(' ')}`);
        await c.unsubscribe([filter]);
        await this.settle(n);
        // $SYS updates that came before the UNSUBACK are values, not news.
        for (const o of c.take())
          if (!(o.delivery && o.topic?.startsWith('$SYS/'))) this.lines.push(`${n} ${s.client}: ${o.line}`);
        return;
      }
    }
  }
}

/** By topic, stable: one topic's deliveries keep their order. */
function sortDeliveries(list: Observation[]): Observation[] {
  return [...list].sort((a, b) => cmp(a.topic!, b.topic!));
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function runScenario(ports: Ports, scenario: Scenario, asyncDeliveries = false): Promise<string[]> {
  return new ScenarioRun(ports, scenario, asyncDeliveries).run();
}
