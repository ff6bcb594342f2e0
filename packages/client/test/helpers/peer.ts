/** A scripted server for the sans-IO session: the codec builds its packets and reads ours. */
import { encode, type Packet, PacketParser, type ProtocolVersion } from '@mqtt-edge/codec';
import type { SessionEvent } from '../../src/core/events.ts';
import type { SessionOptions } from '../../src/core/options.ts';
import { ClientSession } from '../../src/core/session.ts';

export class Peer {
  readonly session: ClientSession;
  readonly version: ProtocolVersion;
  now = 1_000_000;
  private parser: PacketParser;
  /** Every event the session emitted, in order. */
  readonly log: SessionEvent[] = [];

  constructor(options: SessionOptions = {}) {
    this.session = new ClientSession(options);
    this.version = this.session.options.protocolVersion;
    this.parser = new PacketParser({ protocolVersion: this.version });
  }

  /** Packets the client wrote since the last call. */
  packets(): Packet[] {
    const out: Packet[] = [];
    const bytes = this.session.takeOutput();
    if (bytes !== null) this.parser.push(bytes, (p) => out.push(p));
    return out;
  }

  /** Events since the last call (also kept in `log`). */
  events(): SessionEvent[] {
    const e = this.session.takeEvents();
    this.log.push(...e);
    return e;
  }

  send(...packets: Packet[]): void {
    for (const p of packets) this.session.receive(encode(p, this.version), this.now);
  }

  sendRaw(bytes: number[] | Uint8Array): void {
    this.session.receive(bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes), this.now);
  }

  advance(ms: number): void {
    this.now += ms;
    this.session.tick(this.now);
  }

  /** open + CONNACK accepted; returns the CONNECT the client wrote. */
  connect(connack: Partial<Packet & { type: 'connack' }> = {}): Packet {
    this.parser = new PacketParser({ protocolVersion: this.version });
    this.session.open(this.now);
    const [connect] = this.packets();
    this.send({ type: 'connack', sessionPresent: false, reasonCode: 0, ...connack } as Packet);
    return connect;
  }

  /** The transport dropped. */
  drop(): void {
    this.session.connectionLost(this.now, new Error('test drop'));
  }
}

export const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
