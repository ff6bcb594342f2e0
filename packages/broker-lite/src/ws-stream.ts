/**
 * A WebSocket as the byte stream a Connection reads and writes: binary messages in, one binary
 * frame per write out. In place of ws's createWebSocketStream because MQTT over WebSocket is
 * binary only: a text frame must close the connection [MQTT-6.0.0-1], not reach the MQTT
 * parser as bytes. Not a stream.Duplex (issue 18.2): its two stream states, its `once`
 * listeners and closures cost ~1 KB on every idle connection; this gives a Connection what it
 * uses of a socket (ConnSocket), with the WebSocket's own listeners shared by all connections.
 */
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { type RawData, WebSocket } from 'ws';

/** Close code for a frame type we do not accept (RFC 6455 7.4.1). */
const UNSUPPORTED_DATA = 1003;
/** Bytes waiting to go out above which write() asks for a 'drain' (a Duplex's default mark). */
const HIGH_WATER_MARK = 16 * 1024;
const STREAM = Symbol('stream');
type WsOfStream = WebSocket & { [STREAM]: WebSocketStream };

export class WebSocketStream extends EventEmitter {
  /** destroy() was called or the WebSocket closed: nothing more is written. */
  destroyed = false;
  writableEnded = false;
  /**
   * Why ws is closing on its own (its error, a text frame): the closing handshake it started is
   * left to finish (bounded by the server's closeTimeout) so the peer reads the close code.
   */
  private failure: Error | null = null;
  /** Messages that came while paused, handed on at resume (as a socket's read buffer). */
  private held: Buffer[] | null = null;
  private paused = false;
  private wsClosed = false;
  private closeEmitted = false;
  private drainWaiting = false;

  constructor(
    private readonly ws: WebSocket,
    /** The socket under it, for the peer's address and 'drain'. */
    private readonly socket: net.Socket,
  ) {
    super();
    (ws as WsOfStream)[STREAM] = this;
    ws.on('message', onWsMessage);
    ws.on('error', onWsError);
    ws.on('close', onWsClose);
  }

  /** The peer's address, as on a net.Socket (read when a log line wants it). */
  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }
  get remotePort(): number | undefined {
    return this.socket.remotePort;
  }

  /** Bytes written and not yet on the wire (ws's queue and the socket's). */
  get writableLength(): number {
    return this.ws.bufferedAmount;
  }

  message(data: Buffer, isBinary: boolean): void {
    if (this.failure !== null || this.closeEmitted) return;
    if (!isBinary) {
      this.failure = new Error('text frame: MQTT over WebSocket takes binary frames only');
      this.ws.close(UNSUPPORTED_DATA, 'MQTT needs binary frames');
      return;
    }
    // With the default binaryType a message is one Buffer, fragments joined.
    if (this.paused) {
      if (this.held === null) this.held = [];
      this.held.push(data);
    } else this.emit('data', data);
  }

  failed(err: Error): void {
    if (this.failure === null) this.failure = err;
  }

  /** As a TCP socket: what came before the close is still read (a paused publisher may hold some), then 'close'. */
  wsClose(): void {
    this.wsClosed = true;
    if (this.held === null) this.finish();
  }

  pause(): this {
    this.paused = true;
    this.ws.pause();
    return this;
  }

  resume(): this {
    this.paused = false;
    const held = this.held;
    if (held !== null) {
      this.held = null;
      for (let i = 0; i < held.length; i++) {
        if (this.paused || this.closeEmitted) {
          if (!this.closeEmitted) this.held = held.slice(i);
          return this;
        }
        this.emit('data', held[i]);
      }
    }
    if (this.wsClosed) this.finish();
    else if (!this.paused) this.ws.resume();
    return this;
  }

  /** One binary frame; false when the caller should wait for 'drain'. */
  write(chunk: Uint8Array): boolean {
    if (this.destroyed || this.writableEnded) return false;
    this.ws.send(chunk);
    if (this.ws.bufferedAmount < HIGH_WATER_MARK) return true;
    if (!this.drainWaiting) {
      this.drainWaiting = true;
      this.socket.once('drain', () => this.socketDrained());
    }
    return false;
  }

  private socketDrained(): void {
    this.drainWaiting = false;
    if (this.destroyed) return;
    if (this.ws.bufferedAmount < HIGH_WATER_MARK) this.emit('drain');
    else {
      this.drainWaiting = true;
      this.socket.once('drain', () => this.socketDrained());
    }
  }

  /** The closing handshake, after what was written. */
  end(): this {
    if (this.writableEnded) return this;
    this.writableEnded = true;
    this.ws.close();
    return this;
  }

  /**
   * Cut. 'close' (and with it the Connection's onClose) follows the socket's end, so the socket
   * counts in max_connections until it is really gone.
   */
  destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.held = null;
    if (this.ws.readyState === WebSocket.CLOSED) this.finish();
    else if (this.failure === null) this.ws.terminate();
    return this;
  }

  private finish(): void {
    if (this.closeEmitted) return;
    this.closeEmitted = true;
    this.destroyed = true;
    this.held = null;
    if (this.failure !== null && this.listenerCount('error') > 0) this.emit('error', this.failure);
    this.emit('close');
  }
}

// The WebSocket's listeners, shared: no closures per connection.
function onWsMessage(this: WebSocket, data: RawData, isBinary: boolean): void {
  (this as WsOfStream)[STREAM].message(data as Buffer, isBinary);
}
function onWsError(this: WebSocket, err: Error): void {
  (this as WsOfStream)[STREAM].failed(err);
}
function onWsClose(this: WebSocket): void {
  (this as WsOfStream)[STREAM].wsClose();
}
