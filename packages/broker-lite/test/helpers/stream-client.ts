/**
 * An MQTT client over a real socket for packets near MQTT's 256 MB limit, with the test's own
 * memory bounded: it sends a PUBLISH by streaming its payload from one reused chunk, and it
 * reads a large PUBLISH by counting (and checking) its payload bytes as they pass, keeping only
 * the fixed header, topic and properties. Small packets are decoded whole, as usual.
 */
import net from 'node:net';
import {
  type ConnectPacket,
  decode,
  encode,
  type Packet,
  type Properties,
  type ProtocolVersion,
} from '@mqtt-edge/codec';

/** Packets above this size are counted, not buffered. */
const LARGE = 1 << 20;
const CHUNK = 1 << 20;

/** A PUBLISH too large to buffer in a test: what it said and how much payload it carried. */
export interface LargePublish {
  type: 'large-publish';
  qos: number;
  retain: boolean;
  /** Remaining length from the fixed header. */
  remaining: number;
  topic: string;
  packetId: number | undefined;
  properties: Properties | undefined;
  payloadBytes: number;
  /** Every payload byte was the fill byte the test expects. */
  payloadIntact: boolean;
}

export type Received = Packet | LargePublish;

export interface StreamPublishOptions {
  topic: string;
  qos: 0 | 1 | 2;
  retain: boolean;
  packetId?: number;
  /** MQTT 5 properties of the PUBLISH (v5 connections only). */
  properties?: Properties;
  /** Remaining length of the PUBLISH: the payload fills what the topic and properties leave. */
  remaining: number;
  fill: number;
}

function varint(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

export class StreamClient {
  private readonly items: Received[] = [];
  private waiter: ((p: Received | null) => void) | null = null;
  private closedFlag = false;
  readonly closed: Promise<void>;
  version: ProtocolVersion = 4;
  /** The payload fill byte expected in large PUBLISHes received. */
  fill = 0x61;
  // parsing state
  private head: number[] = [];
  private body: Buffer | null = null;
  private bodyLen = 0;
  private remaining = 0;
  private large: LargePublish | null = null;
  private largeHead: Buffer | null = null;
  private payloadStart = -1;
  private fillChunk: Buffer | null = null;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.closedFlag = true;
        this.deliver(null);
        resolve();
      }),
    );
  }

  static open(port: number): Promise<StreamClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new StreamClient(s)));
      s.once('error', reject);
    });
  }

  /** Opens a socket and sends CONNECT; the CONNACK is returned. */
  static async connect(port: number, connect: Partial<ConnectPacket> = {}): Promise<StreamClient> {
    const c = await StreamClient.open(port);
    const packet: ConnectPacket = {
      type: 'connect',
      protocolVersion: 4,
      clientId: '',
      clean: true,
      keepalive: 0,
      ...connect,
    };
    c.version = packet.protocolVersion;
    c.send(packet);
    return c;
  }

  get isClosed(): boolean {
    return this.closedFlag;
  }

  send(p: Packet): void {
    this.socket.write(encode(p, this.version));
  }

  /** The next packet; null once the connection closed. Rejects after `ms`. */
  next(ms = 5000): Promise<Received | null> {
    const p = this.items.shift();
    if (p !== undefined) return Promise.resolve(p);
    if (this.closedFlag) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiter = null;
        reject(new Error(`no packet within ${ms} ms`));
      }, ms);
      this.waiter = (p) => {
        clearTimeout(t);
        resolve(p);
      };
    });
  }

  async expect<T extends Received['type']>(type: T, ms = 5000): Promise<Extract<Received, { type: T }>> {
    const p = await this.next(ms);
    if (p === null) throw new Error(`expected ${type}, connection closed`);
    if (p.type !== type) throw new Error(`expected ${type}, got ${p.type}`);
    return p as Extract<Received, { type: T }>;
  }

  /**
   * Streams one PUBLISH of `remaining` bytes after its fixed header, the payload written from a
   * single reused chunk with the socket's backpressure respected. Resolves with the bytes written
   * and whether the broker closed the connection before the packet was complete.
   */
  async streamPublish(o: StreamPublishOptions): Promise<{ written: number; closedEarly: boolean }> {
    // The packet's variable header from the codec (a PUBLISH with an empty payload), re-framed.
    const probe = encode(
      {
        type: 'publish',
        topic: o.topic,
        payload: new Uint8Array(0),
        qos: o.qos,
        retain: o.retain,
        dup: false,
        packetId: o.qos > 0 ? (o.packetId ?? 1) : undefined,
        properties: o.properties,
      },
      this.version,
    );
    let i = 1;
    while (probe[i] & 0x80) i++;
    const variable = probe.subarray(i + 1);
    const payloadLen = o.remaining - variable.length;
    if (payloadLen < 0) throw new RangeError('remaining is smaller than the topic and properties');
    const head = Buffer.from([probe[0], ...varint(o.remaining), ...variable]);
    const chunk = Buffer.alloc(CHUNK, o.fill);
    let written = 0;
    const write = (b: Buffer): Promise<void> | null => {
      if (this.closedFlag || this.socket.destroyed) return null;
      written += b.length;
      if (this.socket.write(b)) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const done = (): void => {
          this.socket.off('drain', done);
          this.socket.off('close', done);
          resolve();
        };
        this.socket.once('drain', done);
        this.socket.once('close', done);
      });
    };
    if ((await write(head)) === null) return { written, closedEarly: true };
    for (let left = payloadLen; left > 0; left -= CHUNK) {
      const w = write(left >= CHUNK ? chunk : chunk.subarray(0, left));
      if (w === null) return { written, closedEarly: true };
      await w;
    }
    return { written, closedEarly: this.closedFlag };
  }

  close(): void {
    this.socket.destroy();
  }

  private deliver(p: Received | null): void {
    if (this.waiter !== null) {
      const w = this.waiter;
      this.waiter = null;
      w(p);
    } else if (p !== null) this.items.push(p);
  }

  private onData(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.body === null && this.large === null) {
        // fixed header: type byte and remaining length
        this.head.push(chunk[i++]);
        if (this.head.length < 2 || this.head[this.head.length - 1] & 0x80) continue;
        let n = 0;
        for (let k = this.head.length - 1; k >= 1; k--) n = n * 128 + (this.head[k] & 0x7f);
        this.remaining = n;
        this.bodyLen = 0;
        if (n > LARGE && this.head[0] >> 4 === 3) {
          this.large = {
            type: 'large-publish',
            qos: (this.head[0] >> 1) & 3,
            retain: (this.head[0] & 1) === 1,
            remaining: n,
            topic: '',
            packetId: undefined,
            properties: undefined,
            payloadBytes: 0,
            payloadIntact: true,
          };
          this.largeHead = Buffer.alloc(0);
          this.payloadStart = -1;
        } else {
          this.body = Buffer.allocUnsafe(n);
          if (n === 0) this.finishSmall();
        }
        continue;
      }
      const take = Math.min(chunk.length - i, this.remaining - this.bodyLen);
      const piece = chunk.subarray(i, i + take);
      i += take;
      if (this.body !== null) {
        piece.copy(this.body, this.bodyLen);
        this.bodyLen += take;
        if (this.bodyLen === this.remaining) this.finishSmall();
      } else this.largePiece(piece);
    }
  }

  private finishSmall(): void {
    const whole = Buffer.concat([Buffer.from(this.head), this.body as Buffer]);
    this.head = [];
    this.body = null;
    this.deliver(decode(whole, this.version));
  }

  private largePiece(piece: Buffer): void {
    const l = this.large as LargePublish;
    let from = 0;
    if (this.payloadStart < 0) {
      // Keep bytes until the topic, packet id and properties are complete.
      const h = Buffer.concat([this.largeHead as Buffer, piece]);
      const end = this.variableEnd(h, l.qos);
      if (end < 0) {
        this.largeHead = h;
        this.bodyLen += piece.length;
        return;
      }
      // The codec decodes the variable header as a PUBLISH with an empty payload.
      const p = decode(Buffer.from([this.head[0], ...varint(end), ...h.subarray(0, end)]), this.version);
      if (p.type !== 'publish') throw new Error('not a PUBLISH');
      l.topic = p.topic;
      l.packetId = p.packetId;
      l.properties = p.properties;
      this.payloadStart = end;
      from = end - (h.length - piece.length);
      this.largeHead = null;
    }
    if (l.payloadIntact) {
      if (this.fillChunk === null || this.fillChunk[0] !== this.fill)
        this.fillChunk = Buffer.alloc(CHUNK, this.fill);
      const rest = piece.subarray(from);
      for (let k = 0; k < rest.length && l.payloadIntact; k += CHUNK) {
        const part = rest.subarray(k, k + CHUNK);
        l.payloadIntact = part.equals(this.fillChunk.subarray(0, part.length));
      }
    }
    l.payloadBytes += piece.length - from;
    this.bodyLen += piece.length;
    if (this.bodyLen === this.remaining) {
      this.large = null;
      this.head = [];
      this.deliver(l);
    }
  }

  /** Where the topic, packet id and (v5) properties end in `h`, or -1 if not all there yet. */
  private variableEnd(h: Buffer, qos: number): number {
    if (h.length < 2) return -1;
    let at = 2 + h.readUInt16BE(0) + (qos > 0 ? 2 : 0);
    if (this.version !== 5) return h.length >= at ? at : -1;
    let len = 0;
    let mul = 1;
    for (let k = 0; k < 4; k++) {
      if (at >= h.length) return -1;
      const b = h[at++];
      len += (b & 0x7f) * mul;
      mul *= 128;
      if ((b & 0x80) === 0) return h.length >= at + len ? at + len : -1;
    }
    throw new Error('bad property length');
  }
}
