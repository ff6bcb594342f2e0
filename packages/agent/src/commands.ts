/**
 * Downlink: `{prefix}/{device}/cmd/{name}` (payload: JSON args, or empty) becomes a CMD frame;
 * the device's RESULT goes back to the 5.0 response topic with its correlation data, or else to
 * `{prefix}/{device}/cmd/{name}/result`. Anything wrong (unknown device, bad name or args, a
 * device that does not answer) is an error reply, never an exception.
 */
import type { Properties, PublishPacket } from '@mqtt-edge/codec';
import { isName, isValue, type ResultFrame, type Value } from '@mqtt-edge/serial-protocol';
import type { Logger } from './log.ts';

export interface CommandTarget {
  /** true: sent (a RESULT follows); false: the port could not take it; a string: why it cannot be sent. */
  sendCommand(id: number, name: string, args: Value | undefined): boolean | string;
}

export interface Reply {
  topic: string;
  payload: Uint8Array;
  properties?: Properties;
}

export interface CommandRouterOptions {
  prefix: string;
  timeoutMs: number;
  /** The port session serving a device, if it is connected. */
  lookup(device: string): CommandTarget | undefined;
  reply(r: Reply): void;
  log: Logger;
}

export interface CommandCounters {
  received: number;
  sent: number;
  results: number;
  errors: number;
  timeouts: number;
  ignoredRetained: number;
}

interface Pending {
  device: string;
  name: string;
  topic: string;
  correlation: Uint8Array | undefined;
  timer: NodeJS.Timeout;
}

const MAX_PENDING = 256;

/**
 * Command ids, unique across agent restarts: a device answers a CMD id it has seen before from
 * its result cache without running it again (as the firmware should, for retransmitted
 * commands), so a restarted agent counting from 1 again would get stale answers.
 */
let lastCommandId = 1 + Math.floor(Math.random() * 0xffff_fff0);
export function newCommandId(): number {
  lastCommandId = lastCommandId >= 0xffff_fffe ? 1 : lastCommandId + 1;
  return lastCommandId;
}
const MAX_ARGS_BYTES = 768; // a CMD frame is at most 1 KiB decoded

export class CommandRouter {
  readonly counters: CommandCounters = {
    received: 0,
    sent: 0,
    results: 0,
    errors: 0,
    timeouts: 0,
    ignoredRetained: 0,
  };
  private readonly pending = new Map<number, Pending>();

  constructor(private readonly o: CommandRouterOptions) {}

  /** A reload: new commands use the new prefix and timeout; pending ones keep their reply topic. */
  configure(settings: { prefix: string; timeoutMs: number }): void {
    this.o.prefix = settings.prefix;
    this.o.timeoutMs = settings.timeoutMs;
  }

  /** The subscription that carries commands. */
  get filter(): string {
    return `${this.o.prefix}/+/cmd/+`;
  }

  handle(packet: PublishPacket): void {
    const head = `${this.o.prefix}/`;
    if (!packet.topic.startsWith(head)) return;
    const parts = packet.topic.slice(head.length).split('/');
    if (parts.length !== 3 || parts[1] !== 'cmd') return;
    const [device, , name] = parts;
    if (packet.retain) {
      // A retained command would run again at every reconnect: refuse the footgun.
      this.counters.ignoredRetained++;
      this.o.log.log('warn', 'command-retained-ignored', { topic: packet.topic });
      return;
    }
    this.counters.received++;
    const responseTopic = packet.properties?.responseTopic;
    const correlation = packet.properties?.correlationData;
    const replyTopic = responseTopic ?? `${packet.topic}/result`;
    const error = this.route(device, name, packet.payload, replyTopic, correlation);
    if (error === undefined) return;
    this.counters.errors++;
    this.o.log.log('info', 'command-error', { device, name, error });
    this.send(replyTopic, correlation, { ok: false, error });
  }

  /** Sends the command; returns why it could not, if it could not. */
  private route(
    device: string,
    name: string,
    payload: Uint8Array,
    replyTopic: string,
    correlation: Uint8Array | undefined,
  ): string | undefined {
    if (!isName(device)) return 'invalid device id';
    if (!isName(name)) return 'invalid command name';
    let args: Value | undefined;
    if (payload.length > 0) {
      if (payload.length > MAX_ARGS_BYTES) return `args larger than ${MAX_ARGS_BYTES} bytes`;
      let parsed: unknown;
      try {
        parsed = JSON.parse(Buffer.from(payload).toString('utf8'));
      } catch {
        return 'args are not JSON';
      }
      if (!isValue(parsed)) return 'args are not plain JSON data';
      args = parsed;
    }
    const target = this.o.lookup(device);
    if (target === undefined) return `unknown or disconnected device ${device}`;
    if (this.pending.size >= MAX_PENDING) return 'too many commands waiting for devices';
    const id = newCommandId();
    let ok: boolean | string;
    try {
      ok = target.sendCommand(id, name, args);
    } catch (e) {
      return `cannot encode the command: ${(e as Error).message}`;
    }
    if (typeof ok === 'string') return ok;
    if (!ok) return 'serial port not writable';
    this.counters.sent++;
    const timer = setTimeout(() => {
      if (!this.pending.delete(id)) return;
      this.counters.timeouts++;
      this.counters.errors++;
      this.send(replyTopic, correlation, {
        ok: false,
        error: `no answer from ${device} in ${this.o.timeoutMs} ms`,
      });
    }, this.o.timeoutMs);
    timer.unref();
    this.pending.set(id, { device, name, topic: replyTopic, correlation, timer });
    return undefined;
  }

  /** A RESULT frame from a device. */
  result(device: string, r: ResultFrame): void {
    const p = this.pending.get(r.id);
    if (p === undefined || p.device !== device) return; // our HELLO requests, or late
    this.pending.delete(r.id);
    clearTimeout(p.timer);
    this.counters.results++;
    const body: Record<string, unknown> = { ok: r.ok };
    if (r.value !== undefined) body.value = r.value;
    if (r.error !== undefined) body.error = r.error;
    this.send(p.topic, p.correlation, body);
  }

  close(): void {
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
  }

  private send(topic: string, correlation: Uint8Array | undefined, body: Record<string, unknown>): void {
    const json = JSON.stringify(body, (_k, v) =>
      v instanceof Uint8Array ? { base64: Buffer.from(v).toString('base64') } : v,
    );
    const r: Reply = { topic, payload: Buffer.from(json, 'utf8') };
    if (correlation !== undefined) r.properties = { correlationData: correlation };
    this.o.reply(r);
  }
}
