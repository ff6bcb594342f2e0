/**
 * A WebSocket client written byte by byte over a real TCP socket, for hostile-input tests: it
 * sends exactly the HTTP request and frames a test builds (bad lengths, unmasked, fragmented,
 * text, oversized control frames) and reads back the server's status line and frames.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { type ConnectPacket, encode, type Packet, PacketParser } from '@mqtt-edge/codec';

export const OP = { continuation: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 } as const;

export interface FrameOptions {
  fin?: boolean;
  mask?: boolean;
  /** RSV1-3 as the three bits after FIN. */
  rsv?: number;
  /** Length written in the header in place of the payload's (a header-only frame). */
  declaredLength?: number | bigint;
}

const MASK = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

/** One frame as a client sends it (masked unless told otherwise). */
export function frame(opcode: number, payload: Uint8Array = new Uint8Array(0), o: FrameOptions = {}): Buffer {
  const mask = o.mask !== false;
  const len = o.declaredLength ?? payload.length;
  const n = BigInt(len);
  const head: number[] = [((o.fin === false ? 0 : 1) << 7) | ((o.rsv ?? 0) << 4) | opcode];
  const m = mask ? 0x80 : 0;
  if (n < 126n) head.push(m | Number(n));
  else if (n < 65_536n) head.push(m | 126, Number(n >> 8n), Number(n & 0xffn));
  else {
    head.push(m | 127);
    for (let i = 7; i >= 0; i--) head.push(Number((n >> BigInt(i * 8)) & 0xffn));
  }
  const body = Buffer.from(payload);
  if (mask) for (let i = 0; i < body.length; i++) body[i] ^= MASK[i & 3];
  return Buffer.concat([Buffer.from(head), mask ? MASK : Buffer.alloc(0), body]);
}

/** `bytes` XOR the mask from `offset` on: a payload chunk of a masked frame already begun. */
export function maskedChunk(bytes: Uint8Array, offset: number): Buffer {
  const out = Buffer.from(bytes);
  for (let i = 0; i < out.length; i++) out[i] ^= MASK[(offset + i) & 3];
  return out;
}

export function upgradeRequest(headers: Record<string, string> = {}, method = 'GET', path = '/mqtt'): string {
  const all: Record<string, string> = {
    Host: '127.0.0.1',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
    'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Protocol': 'mqtt',
    ...headers,
  };
  let req = `${method} ${path} HTTP/1.1\r\n`;
  for (const [k, v] of Object.entries(all)) if (v !== '') req += `${k}: ${v}\r\n`;
  return `${req}\r\n`;
}

interface ServerFrame {
  opcode: number;
  payload: Buffer;
}

export class RawWs {
  /** HTTP status of the server's answer (0 until one is read). */
  status = 0;
  responseHead = '';
  readonly frames: ServerFrame[] = [];
  /** Status code of the server's close frame, when it sent one. */
  closeCode: number | undefined;
  isClosed = false;
  readonly closed: Promise<void>;
  /** Answer the server's close frame as a browser would; false: a peer that never does. */
  answerClose = true;
  private buf = Buffer.alloc(0);
  private inHttp = true;
  private waiters: Array<() => void> = [];
  private mqtt = new PacketParser({ protocolVersion: 4 });
  private version: 3 | 4 | 5 = 4;
  private readonly packets: Packet[] = [];

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.isClosed = true;
        this.wake();
        resolve();
      }),
    );
  }

  static open(port: number): Promise<RawWs> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new RawWs(s)));
      s.once('error', reject);
    });
  }

  /** Opens a socket and completes the upgrade; throws unless the server answers 101. */
  static async upgraded(port: number, headers: Record<string, string> = {}): Promise<RawWs> {
    const ws = await RawWs.open(port);
    ws.write(upgradeRequest(headers));
    const status = await ws.response();
    if (status !== 101) throw new Error(`upgrade refused: ${ws.responseHead}`);
    return ws;
  }

  write(bytes: string | Uint8Array): boolean {
    return this.socket.write(bytes);
  }

  /** Resolves with the HTTP status once the response head arrived, 0 if the socket closed first. */
  async response(ms = 5000): Promise<number> {
    await this.until(() => this.status !== 0, ms);
    return this.status;
  }

  /** Sends `p` as one binary frame (a CONNECT sets the protocol version of what follows). */
  sendPacket(p: Packet): void {
    if (p.type === 'connect') {
      this.version = p.protocolVersion;
      this.mqtt = new PacketParser({ protocolVersion: p.protocolVersion });
    }
    this.write(frame(OP.binary, encode(p, this.version)));
  }

  connectPacket(c: Partial<ConnectPacket> = {}): ConnectPacket {
    return { type: 'connect', protocolVersion: 4, clientId: '', clean: true, keepalive: 30, ...c };
  }

  /** The next MQTT packet from binary frames, or null if the connection closed first. */
  async nextPacket(ms = 5000): Promise<Packet | null> {
    await this.until(() => this.packets.length > 0, ms);
    return this.packets.shift() ?? null;
  }

  /** Resolves once the socket is closed; rejects after `ms`. */
  async waitClosed(ms = 5000): Promise<void> {
    await this.until(() => false, ms);
    if (!this.isClosed) throw new Error(`socket still open after ${ms} ms`);
  }

  close(): void {
    this.socket.destroy();
  }

  private until(cond: () => boolean, ms: number): Promise<void> {
    if (cond() || this.isClosed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        if (cond() || this.isClosed) resolve();
        else reject(new Error(`nothing within ${ms} ms (status ${this.status}, closed ${this.isClosed})`));
      }, ms);
      const check = (): void => {
        if (!cond() && !this.isClosed) return;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve();
      };
      this.waiters.push(check);
    });
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  private onData(chunk: Buffer): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    if (this.inHttp) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      this.responseHead = this.buf.subarray(0, end).toString('latin1');
      this.status = Number(/^HTTP\/1\.1 (\d{3})/.exec(this.responseHead)?.[1] ?? -1);
      this.buf = this.buf.subarray(end + 4);
      this.inHttp = false;
      if (this.status !== 101) this.buf = Buffer.alloc(0);
    }
    for (;;) {
      const b = this.buf;
      if (b.length < 2) break;
      let len = b[1] & 0x7f;
      let at = 2;
      if (len === 126) {
        if (b.length < 4) break;
        len = b.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (b.length < 10) break;
        len = Number(b.readBigUInt64BE(2));
        at = 10;
      }
      if (b.length < at + len) break;
      const f = { opcode: b[0] & 0x0f, payload: b.subarray(at, at + len) };
      this.buf = b.subarray(at + len);
      this.frames.push(f);
      if (f.opcode === OP.close) {
        if (f.payload.length >= 2) this.closeCode = f.payload.readUInt16BE(0);
        if (this.answerClose && !this.socket.destroyed)
          this.socket.end(frame(OP.close, f.payload.subarray(0, 2)));
      }
      if (f.opcode === OP.binary || f.opcode === OP.continuation)
        this.mqtt.push(f.payload, (p) => this.packets.push(p));
    }
    this.wake();
  }
}
