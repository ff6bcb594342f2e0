/**
 * A WebSocket as the byte stream a Connection reads and writes: binary messages in, one binary
 * frame per write out. In place of ws's createWebSocketStream because MQTT over WebSocket is
 * binary only: a text frame must close the connection [MQTT-6.0.0-1], not reach the MQTT
 * parser as bytes.
 */
import type net from 'node:net';
import { Duplex } from 'node:stream';
import { type RawData, WebSocket } from 'ws';

/** Close code for a frame type we do not accept (RFC 6455 7.4.1). */
const UNSUPPORTED_DATA = 1003;

export class WebSocketStream extends Duplex {
  /**
   * Why ws is closing on its own (its error, a text frame): the closing handshake it started is
   * left to finish (bounded by the server's closeTimeout) so the peer reads the close code.
   */
  private failure: Error | null = null;

  constructor(
    private readonly ws: WebSocket,
    /** The socket under it, for the peer's address. */
    private readonly socket: net.Socket,
  ) {
    super({ decodeStrings: true });
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (this.failure !== null) return;
      if (!isBinary) {
        this.failure = new Error('text frame: MQTT over WebSocket takes binary frames only');
        ws.close(UNSUPPORTED_DATA, 'MQTT needs binary frames');
        return;
      }
      // With the default binaryType a message is one Buffer, fragments joined.
      if (!this.push(data as Buffer)) ws.pause();
    });
    ws.on('error', (err: Error) => {
      if (this.failure === null) this.failure = err;
    });
    // As a TCP socket: what was received before the close is still read (a paused publisher
    // may hold some), then the stream ends and closes.
    ws.once('close', () => this.push(null));
    this.once('end', () => this.destroy(this.failure ?? undefined));
  }

  /** The peer's address, as on a net.Socket (read when a log line wants it). */
  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }
  get remotePort(): number | undefined {
    return this.socket.remotePort;
  }

  override _read(): void {
    if (this.ws.isPaused) this.ws.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.ws.send(chunk, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.ws.close();
    callback();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    const ws = this.ws;
    if (ws.readyState === WebSocket.CLOSED) {
      callback(err);
      return;
    }
    // 'close' (and with it the Connection's onClose) follows the socket's end, so the socket
    // counts in max_connections until it is really gone.
    ws.once('close', () => callback(err));
    if (this.failure === null) ws.terminate();
  }
}
