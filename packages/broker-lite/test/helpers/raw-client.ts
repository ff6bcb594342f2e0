/**
 * Test helpers: a broker on an ephemeral loopback port, and a raw MQTT client over a real
 * socket that sends exactly the packets (or bytes) a test writes and queues what comes back.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import {
  type ConnackPacket,
  type ConnectPacket,
  encode,
  type Packet,
  PacketParser,
  type ProtocolVersion,
} from '@mqtt-edge/codec';
import { Broker, type BrokerOptions } from '../../src/index.ts';

export interface LogLine {
  level: string;
  message: string;
  fields?: Record<string, unknown>;
}

export interface TestBroker {
  broker: Broker;
  port: number;
  logs: LogLine[];
  close(): Promise<void>;
}

export async function startBroker(options: Partial<BrokerOptions> = {}): Promise<TestBroker> {
  const logs: LogLine[] = [];
  const broker = new Broker({
    listeners: [{ port: 0, host: '127.0.0.1', protocol: 'mqtt' }],
    sysInterval: 0,
    authFailureDelayMs: 0,
    logger: { log: (level, message, fields) => logs.push({ level, message, fields }) },
    ...options,
  });
  await broker.listen();
  return { broker, port: broker.addresses[0].port, logs, close: () => broker.close() };
}

export class RawClient {
  readonly socket: net.Socket;
  private parser: PacketParser;
  private readonly queue: Packet[] = [];
  private waiter: ((p: Packet | null) => void) | null = null;
  isClosed = false;
  readonly closed: Promise<void>;
  error: unknown = null;
  version: ProtocolVersion = 4;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.parser = new PacketParser({ protocolVersion: 4 });
    socket.on('data', (chunk: Buffer) => {
      try {
        this.parser.push(chunk, (p) => {
          if (this.waiter !== null) {
            const w = this.waiter;
            this.waiter = null;
            w(p);
          } else this.queue.push(p);
        });
      } catch (err) {
        this.error = err;
        socket.destroy();
      }
    });
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        this.isClosed = true;
        if (this.waiter !== null) {
          const w = this.waiter;
          this.waiter = null;
          w(null);
        }
        resolve();
      });
    });
    socket.on('error', () => {});
  }

  /** Over any byte stream (one end of a duplexPair handed to Broker.accept). */
  static over(stream: Duplex): RawClient {
    return new RawClient(stream as net.Socket);
  }

  static open(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  /** Opens a socket, sends CONNECT, returns the client and its CONNACK. */
  static async connect(
    port: number,
    connect: Partial<ConnectPacket> = {},
  ): Promise<{ client: RawClient; connack: ConnackPacket }> {
    const c = await RawClient.open(port);
    const connack = await c.handshake(connect);
    return { client: c, connack };
  }

  async handshake(connect: Partial<ConnectPacket> = {}): Promise<ConnackPacket> {
    const packet: ConnectPacket = {
      type: 'connect',
      protocolVersion: 4,
      clientId: '',
      clean: true,
      keepalive: 60,
      ...connect,
    };
    this.version = packet.protocolVersion;
    this.parser = new PacketParser({ protocolVersion: packet.protocolVersion });
    this.send(packet);
    const ack = await this.next();
    if (ack?.type !== 'connack') throw new Error(`expected CONNACK, got ${ack?.type ?? 'close'}`);
    return ack;
  }

  send(p: Packet): void {
    this.socket.write(encode(p, this.version));
  }

  sendBytes(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** The next packet, or null when the connection closed first. Rejects after `ms`. */
  next(ms = 3000): Promise<Packet | null> {
    const p = this.queue.shift();
    if (p !== undefined) return Promise.resolve(p);
    if (this.isClosed) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new Error(`no packet within ${ms} ms`));
      }, ms);
      this.waiter = (pk) => {
        clearTimeout(timer);
        resolve(pk);
      };
    });
  }

  /** The next packet, which must be of `type`. */
  async expect<T extends Packet['type']>(type: T, ms = 3000): Promise<Extract<Packet, { type: T }>> {
    const p = await this.next(ms);
    if (p === null) throw new Error(`expected ${type}, connection closed`);
    if (p.type !== type) throw new Error(`expected ${type}, got ${JSON.stringify(p)}`);
    return p as Extract<Packet, { type: T }>;
  }

  /** Resolves true if no packet arrives within `ms` (for "nothing is delivered" checks). */
  async silent(ms = 200): Promise<boolean> {
    try {
      const p = await this.next(ms);
      if (p !== null) this.queue.unshift(p);
      return p === null;
    } catch {
      return true;
    }
  }

  async subscribe(filter: string, qos: 0 | 1 | 2 = 0, packetId = 1): Promise<number[]> {
    this.send({ type: 'subscribe', packetId, subscriptions: [{ topicFilter: filter, qos }] });
    const ack = await this.expect('suback');
    return ack.reasonCodes;
  }

  publish(
    topic: string,
    payload: string | Uint8Array,
    qos: 0 | 1 | 2 = 0,
    retain = false,
    packetId?: number,
  ): void {
    this.send({
      type: 'publish',
      topic,
      payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
      qos,
      retain,
      dup: false,
      packetId: qos > 0 ? (packetId ?? 1) : undefined,
    });
  }

  close(): void {
    this.socket.destroy();
  }

  async disconnect(): Promise<void> {
    this.send({ type: 'disconnect' });
    this.socket.end();
    await this.closed;
  }
}

export function text(p: { payload: Uint8Array }): string {
  return Buffer.from(p.payload).toString();
}
