/**
 * MQTT over WebSocket on the upgraded socket itself (RFC 6455, server side): client frames are
 * unmasked as they arrive and their payload handed on at once, so nothing here holds a frame
 * (the MQTT parser holds what it needs of a packet, under the packet limits); one binary frame
 * goes out per write. Binary frames only: a text frame closes with 1003, since MQTT over
 * WebSocket is binary [MQTT-6.0.0-1]. No extension is offered (permessage-deflate: none).
 *
 * In place of the ws package (issue 18.2): its WebSocket, Receiver (a stream.Writable) and Sender
 * held ~1,100 bytes per idle connection; this is one object of a few small fields, a Connection's
 * byte stream (ConnSocket) directly, and its listeners on the socket are shared by all connections.
 */
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { ConnState } from './conn-state.ts';

/** Close codes (RFC 6455 7.4.1). */
export const WsClose = {
  normal: 1000,
  protocolError: 1002,
  unsupportedData: 1003,
  tooBig: 1009,
} as const;

/** Largest messages (all fragments of one) a client may send, before its CONNACK and after. */
export interface WsLimits {
  readonly beforeConnack: number;
  readonly afterConnack: number;
}

/** Bytes waiting to go out above which write() asks for a 'drain', and pongs are skipped. */
const HIGH_WATER_MARK = 16 * 1024;
/** How long a peer gets to answer a close this side started for a protocol error. */
const CLOSE_TIMEOUT_MS = 2000;
/** The longest frame header a client sends: 2 bytes, 8 of length, 4 of mask. */
const MAX_HEADER = 14;

// flags
const PAUSED = 1;
const PARSING = 2;
const CLOSE_SENT = 4;
const CLOSE_RECEIVED = 8;
const FAILED = 16;
const SOCKET_CLOSED = 32;
const CLOSE_EMITTED = 64;
const DRAIN_WAITING = 128;
/** A fragmented binary message has begun: continuation frames are expected. */
const IN_MESSAGE = 256;
/** The frame being read is its message's last. */
const FIN = 512;

const STREAM = Symbol('ws-stream');
type SocketOfStream = net.Socket & { [STREAM]: WebSocketStream };

export class WebSocketStream extends EventEmitter {
  /** destroy() was called or the socket closed: nothing more is written. */
  destroyed = false;
  writableEnded = false;
  /** Who reads this stream: before its CONNACK, messages get the smaller limit. */
  reader: { readonly state: ConnState } | null = null;
  private flags = 0;
  /** Opcode of the frame being read; -1 between frames (reading a header). */
  private opcode = -1;
  /** Its payload bytes still to come. */
  private left = 0;
  private mask = 0;
  /** Payload bytes of the frame read so far (the mask's phase). */
  private done = 0;
  /** Bytes of the binary message so far, fragments together. */
  private message = 0;
  /** A frame header split between chunks, or a control frame's payload being gathered. */
  private part: Buffer | null = null;
  /** What came after a pause() in the chunk being read, read on at resume(). */
  private rest: Buffer | null = null;
  private failure: Error | null = null;

  constructor(
    private readonly socket: net.Socket,
    private readonly limits: WsLimits,
  ) {
    super();
    (socket as SocketOfStream)[STREAM] = this;
    socket.on('data', onSocketData);
    socket.on('end', onSocketEnd);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
  }

  /** The peer's address, as on a net.Socket (read when a log line wants it). */
  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }
  get remotePort(): number | undefined {
    return this.socket.remotePort;
  }

  /** Bytes written and not yet on the wire. */
  get writableLength(): number {
    return this.socket.writableLength;
  }

  /** One binary frame; false when the caller should wait for 'drain'. */
  write(chunk: Uint8Array): boolean {
    if (this.destroyed || this.writableEnded) return false;
    if (this.socket.write(frameOf(0x82, chunk))) return true;
    if ((this.flags & DRAIN_WAITING) === 0) {
      this.flags |= DRAIN_WAITING;
      this.socket.on('drain', onSocketDrain);
    }
    return false;
  }

  /** The closing handshake: a close frame, then the socket's end once the peer answers. */
  end(): this {
    if (this.writableEnded) return this;
    this.writableEnded = true;
    this.sendClose(WsClose.normal);
    if ((this.flags & CLOSE_RECEIVED) !== 0) this.socket.end();
    return this;
  }

  /** Cut. 'close' follows the socket's. */
  destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.rest = null;
    this.socket.destroy();
    return this;
  }

  pause(): this {
    this.flags |= PAUSED;
    this.socket.pause();
    return this;
  }

  resume(): this {
    this.flags &= ~PAUSED;
    if ((this.flags & PARSING) !== 0) return this; // the loop reading a chunk goes on by itself
    const rest = this.rest;
    if (rest !== null) {
      this.rest = null;
      this.read(rest);
      if ((this.flags & PAUSED) !== 0) return this;
    }
    // As a TCP socket: what came before the close is read first, then 'close'.
    if ((this.flags & SOCKET_CLOSED) !== 0) this.finish();
    else this.socket.resume();
    return this;
  }

  /** Reads frames from `chunk` until it is used up, the stream pauses or the connection fails. */
  read(chunk: Buffer): void {
    const len = chunk.length;
    let at = 0;
    this.flags |= PARSING;
    while (at < len && (this.flags & (FAILED | CLOSE_RECEIVED)) === 0 && !this.destroyed) {
      if ((this.flags & PAUSED) !== 0) {
        this.rest = chunk.subarray(at);
        break;
      }
      if (this.opcode < 0) {
        at = this.readHeader(chunk, at);
        continue;
      }
      const n = Math.min(this.left, len - at);
      const payload = chunk.subarray(at, at + n);
      unmask(payload, this.mask, this.done);
      at += n;
      this.done += n;
      this.left -= n;
      if (this.opcode >= 8) this.part = this.part === null ? payload : Buffer.concat([this.part, payload]);
      else if (n > 0) this.emit('data', payload);
      if (this.left === 0) this.frameEnd();
    }
    this.flags &= ~PARSING;
  }

  /** Reads a frame header at `at` (with what `part` holds of it); returns where its payload starts. */
  private readHeader(chunk: Buffer, at: number): number {
    let b = chunk;
    let from = at;
    const held = this.part === null ? 0 : this.part.length;
    if (held > 0) {
      b = Buffer.concat([this.part as Buffer, chunk.subarray(at, at + MAX_HEADER - held)]);
      from = 0;
    }
    const avail = b.length - from;
    if (avail < 2) return this.holdHeader(b, from, chunk.length);
    const b0 = b[from];
    const b1 = b[from + 1];
    if ((b0 & 0x70) !== 0) return this.fail(WsClose.protocolError, 'reserved bits set (no extension)');
    if ((b1 & 0x80) === 0) return this.fail(WsClose.protocolError, 'unmasked frame from a client');
    let size = b1 & 0x7f;
    const headerLen = size === 126 ? 8 : size === 127 ? 14 : 6;
    if (avail < headerLen) return this.holdHeader(b, from, chunk.length);
    if (size === 126) size = b.readUInt16BE(from + 2);
    else if (size === 127) {
      const high = b.readUInt32BE(from + 2);
      if (high >= 0x80000000) return this.fail(WsClose.protocolError, '64-bit length with its top bit set');
      // 4 GiB or more: beyond any MQTT packet (256 MiB), so beyond any limit here.
      size = high === 0 ? b.readUInt32BE(from + 6) : 2 ** 32;
    }
    const op = b0 & 0x0f;
    const fin = (b0 & 0x80) !== 0;
    if (op >= 8) {
      if (op > 10) return this.fail(WsClose.protocolError, `reserved opcode ${op}`);
      if (!fin) return this.fail(WsClose.protocolError, 'fragmented control frame');
      if (size > 125) return this.fail(WsClose.protocolError, 'control frame over 125 bytes');
    } else {
      if (op === 1) return this.fail(WsClose.unsupportedData, 'text frame: MQTT over WebSocket is binary');
      if (op > 2) return this.fail(WsClose.protocolError, `reserved opcode ${op}`);
      const inMessage = (this.flags & IN_MESSAGE) !== 0;
      if (op === 0 && !inMessage)
        return this.fail(WsClose.protocolError, 'continuation with nothing to continue');
      if (op === 2 && inMessage)
        return this.fail(WsClose.protocolError, 'new message inside a fragmented one');
      this.message += size;
      const r = this.reader;
      const limit =
        r !== null && r.state === ConnState.Connected ? this.limits.afterConnack : this.limits.beforeConnack;
      if (this.message > limit) return this.fail(WsClose.tooBig, `message over ${limit} bytes`);
      this.flags = fin ? (this.flags | FIN) & ~IN_MESSAGE : this.flags | IN_MESSAGE;
    }
    this.mask = b.readInt32BE(from + headerLen - 4);
    this.opcode = op;
    this.left = size;
    this.done = 0;
    this.part = null;
    if (size === 0) this.frameEnd();
    return at + headerLen - held;
  }

  /** Keeps an incomplete header (at most 13 bytes) for the next chunk. */
  private holdHeader(b: Buffer, from: number, end: number): number {
    this.part = Buffer.from(b.subarray(from));
    return end;
  }

  private frameEnd(): void {
    const op = this.opcode;
    this.opcode = -1;
    if (op < 8) {
      if ((this.flags & FIN) !== 0) {
        this.flags &= ~FIN;
        this.message = 0;
      }
      return;
    }
    const payload = this.part;
    this.part = null;
    if (op === 9) {
      // A peer that does not read its pongs gets no more of them (RFC 6455 5.5.3 allows
      // answering only the latest ping): what it sends never grows what is held for it.
      if ((this.flags & CLOSE_SENT) === 0 && this.socket.writableLength < HIGH_WATER_MARK)
        this.socket.write(frameOf(0x8a, payload ?? EMPTY));
    } else if (op === 8) this.closeReceived(payload);
  }

  private closeReceived(payload: Buffer | null): void {
    if (payload !== null && payload.length > 0) {
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : 0;
      if (!validCloseCode(code)) {
        this.fail(WsClose.protocolError, `invalid close code ${code}`);
        return;
      }
    }
    this.flags |= CLOSE_RECEIVED;
    this.writableEnded = true;
    // Echo the peer's code (RFC 6455 5.5.1), then end: the handshake is complete.
    if ((this.flags & CLOSE_SENT) === 0) {
      this.flags |= CLOSE_SENT;
      this.socket.write(frameOf(0x88, payload === null ? EMPTY : payload.subarray(0, 2)));
    }
    this.socket.end();
  }

  private sendClose(code: number): void {
    if ((this.flags & CLOSE_SENT) !== 0 || this.destroyed) return;
    this.flags |= CLOSE_SENT;
    this.socket.write(frameOf(0x88, Uint8Array.of(code >> 8, code & 0xff)));
  }

  /**
   * Fails the connection (RFC 6455 7.1.7): the close frame with `code`, the socket ended, and
   * cut if the peer has not gone in CLOSE_TIMEOUT_MS. Nothing it sends is read any more.
   */
  private fail(code: number, why: string): number {
    this.flags |= FAILED;
    this.failure = new Error(`WebSocket: ${why}`);
    this.part = null;
    this.rest = null;
    this.writableEnded = true;
    this.sendClose(code);
    this.socket.end();
    const socket = this.socket;
    setTimeout(() => socket.destroy(), CLOSE_TIMEOUT_MS).unref();
    return Number.MAX_SAFE_INTEGER;
  }

  onSocketEnd(): void {
    // The peer is gone (with or without its close frame): end this side too.
    this.writableEnded = true;
    this.socket.end();
  }

  onSocketError(err: Error): void {
    if (this.failure === null) this.failure = err;
  }

  onSocketClose(): void {
    this.flags |= SOCKET_CLOSED;
    if (this.rest === null || this.destroyed) this.finish();
  }

  onSocketDrain(): void {
    this.flags &= ~DRAIN_WAITING;
    this.socket.off('drain', onSocketDrain);
    if (!this.destroyed) this.emit('drain');
  }

  private finish(): void {
    if ((this.flags & CLOSE_EMITTED) !== 0) return;
    this.flags |= CLOSE_EMITTED;
    this.destroyed = true;
    this.writableEnded = true;
    this.rest = null;
    this.part = null;
    if (this.failure !== null && this.listenerCount('error') > 0) this.emit('error', this.failure);
    this.emit('close');
  }
}

const EMPTY = new Uint8Array(0);

/** A server frame (unmasked): `first` is FIN and the opcode. */
export function frameOf(first: number, payload: Uint8Array): Buffer {
  const n = payload.length;
  const headerLen = n < 126 ? 2 : n < 65_536 ? 4 : 10;
  const out = Buffer.allocUnsafe(headerLen + n);
  out[0] = first;
  if (n < 126) out[1] = n;
  else if (n < 65_536) {
    out[1] = 126;
    out.writeUInt16BE(n, 2);
  } else {
    out[1] = 127;
    out.writeUInt32BE(Math.floor(n / 2 ** 32), 2);
    out.writeUInt32BE(n >>> 0, 6);
  }
  out.set(payload, headerLen);
  return out;
}

/** XORs `data` in place with the 32-bit `mask` (big-endian), starting `phase` bytes into it. */
export function unmask(data: Buffer, mask: number, phase: number): void {
  const m0 = (mask >>> 24) & 0xff;
  const m1 = (mask >>> 16) & 0xff;
  const m2 = (mask >>> 8) & 0xff;
  const m3 = mask & 0xff;
  const n = data.length;
  let i = 0;
  // Up to a mask boundary, then four bytes a turn.
  for (; i < n && ((phase + i) & 3) !== 0; i++) data[i] ^= maskByte(mask, phase + i);
  const end = n - 3;
  for (; i < end; i += 4) {
    data[i] ^= m0;
    data[i + 1] ^= m1;
    data[i + 2] ^= m2;
    data[i + 3] ^= m3;
  }
  for (; i < n; i++) data[i] ^= maskByte(mask, phase + i);
}

function maskByte(mask: number, at: number): number {
  return (mask >>> (24 - 8 * (at & 3))) & 0xff;
}

/** Close codes a peer may send (RFC 6455 7.4.1/7.4.2; 1005, 1006 and 1015 never go on the wire). */
function validCloseCode(code: number): boolean {
  return (
    (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) ||
    (code >= 3000 && code <= 4999)
  );
}

// The socket's listeners, shared: no closures per connection.
function onSocketData(this: SocketOfStream, chunk: Buffer): void {
  this[STREAM].read(chunk);
}
function onSocketEnd(this: SocketOfStream): void {
  this[STREAM].onSocketEnd();
}
function onSocketError(this: SocketOfStream, err: Error): void {
  this[STREAM].onSocketError(err);
}
function onSocketClose(this: SocketOfStream): void {
  this[STREAM].onSocketClose();
}
function onSocketDrain(this: SocketOfStream): void {
  this[STREAM].onSocketDrain();
}
