/**
 * In-process serial link: two Duplex streams wired back to back, for unit tests and for the
 * demo when socat is missing. The host end behaves like an open `SerialPort` (a Duplex of
 * bytes), so code written against serialport runs unchanged over it.
 */
import { Duplex } from 'node:stream';

class Endpoint extends Duplex {
  peer: Endpoint | undefined;
  constructor(private readonly pair: LinkPair) {
    super({ allowHalfOpen: false });
  }
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const peer = this.peer;
    if (this.pair.connected && peer !== undefined) {
      // Copy, and deliver on a later tick: a real UART never calls the reader inside write().
      const copy = Buffer.from(chunk);
      process.nextTick(() => {
        if (this.pair.connected && !peer.destroyed) peer.push(copy);
      });
    } else {
      this.pair.droppedBytes += chunk.length;
    }
    cb();
  }
  override _final(cb: (err?: Error | null) => void): void {
    this.peer?.push(null);
    cb();
  }
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const peer = this.peer;
    if (peer !== undefined && !peer.destroyed) process.nextTick(() => peer.push(null));
    cb(err);
  }
}

export class LinkPair {
  /** The firmware's end. */
  readonly device: Duplex;
  /** The agent's end. */
  readonly host: Duplex;
  /** When false, bytes in both directions vanish (a cut wire, not a hang-up). */
  connected = true;
  droppedBytes = 0;

  constructor() {
    const a = new Endpoint(this);
    const b = new Endpoint(this);
    a.peer = b;
    b.peer = a;
    this.device = a;
    this.host = b;
  }

  close(): void {
    this.device.destroy();
    this.host.destroy();
  }
}

export function createLinkPair(): LinkPair {
  return new LinkPair();
}
