/**
 * The streaming parser: bytes in, packets out, whatever the chunking. It keeps only the packet
 * not yet complete; a packet that arrives whole in one chunk is decoded in place, and its
 * payload and binary fields are views into that chunk.
 */
import { checkFirstByte, type DecodeLimits, decodeBody, releaseInput } from './decoder.ts';
import { MqttError } from './errors.ts';
import type { Packet, ProtocolVersion } from './packets.ts';

/** 1 byte of type, 4 of remaining length, 268,435,455 of body: the largest MQTT packet. */
export const MAX_PACKET_SIZE = 268_435_460;

/**
 * User properties one packet may carry by default (a CONNECT and its will together). Each is
 * two objects when decoded, ~15x its wire size at worst: the count bounds what a packet costs.
 */
export const DEFAULT_MAX_USER_PROPERTIES = 1024;

/** Partial packets up to this size are assembled in a shared slab of SLAB_SIZE bytes. */
const SLAB_PACKET_MAX = 2048;
const SLAB_SIZE = 16_384;

export interface PacketParserOptions {
  /** The session's protocol; when unset it follows the first CONNECT parsed (server side). */
  protocolVersion?: ProtocolVersion;
  /** Largest whole packet accepted, fixed header included (default and maximum 268,435,460). */
  maxPacketSize?: number;
  /**
   * Most user properties one packet may carry, CONNECT and will properties together (default
   * DEFAULT_MAX_USER_PROPERTIES). One more is an MqttError USER_PROPERTIES_TOO_MANY, reason
   * 0x95 (packet too large), thrown before it is decoded.
   */
  maxUserProperties?: number;
  /**
   * Most levels in a topic name (PUBLISH, will), i.e. '/' separators + 1; deeper is an MqttError
   * TOPIC_TOO_DEEP, reason 0x90 (topic name invalid). Counted in the pass that reads the name.
   * Default 65,536, the most a 65,535-byte name can have: no limit. Topic filters are not
   * checked: a server refuses those one at a time.
   */
  maxTopicLevels?: number;
}

/**
 * Feed it bytes with `push`; it calls `onPacket` for every complete packet, in order, with the
 * `context` given to that push (a server sharing parsers among connections passes the
 * connection: one callback for all, no closure per connection).
 *
 * Payloads (and other binary fields) are views into the chunk passed to `push` when the packet
 * arrived whole in it, or else into memory of the parser's own that it never rewrites (a 16 KiB
 * slab shared by small packets, or a buffer per large packet). So: do not reuse or overwrite a
 * chunk's memory after pushing it while its packets live, and copy (`slice()`) a payload you
 * keep for long, or it keeps its whole chunk or slab alive.
 *
 * A throw from `push` (an MqttError for bad input, or whatever `onPacket` threw) leaves the
 * parser failed: every later `push` rethrows that error until `reset()`. The stream position is
 * lost after a bad packet; the connection is to be closed (with the error's reason code).
 */
export class PacketParser implements DecodeLimits {
  declare protocolVersion: ProtocolVersion | undefined;
  /**
   * The options of the same names. Writable: a change applies from the next packet header
   * read, even within the chunk being pushed (a server raises the size limit once a client is
   * authenticated). A packet already being buffered is not checked again.
   */
  declare maxPacketSize: number;
  declare maxUserProperties: number;
  declare maxTopicLevels: number;
  // Fields are declared here and set in the constructor (one assignment each in the bundle).
  /** Header bytes of a packet whose remaining length is not complete yet (at most 5). */
  declare private readonly head: Uint8Array;
  declare private headLen: number;
  /**
   * Where the packet being assembled goes once its size is known: a region of the shared slab
   * for small packets (no allocation per packet), or a buffer of its own for large ones.
   */
  declare private body: Uint8Array | null;
  declare private bodyStart: number;
  declare private bodyLen: number;
  /** The fast path's bound: bodyLen + n below it means not complete and room to copy. */
  declare private limit: number;
  declare private total: number;
  declare private headerSize: number;
  declare private slab: Uint8Array | null;
  declare private slabUsed: number;
  declare private failure: unknown;
  declare private failed: boolean;

  constructor(options: PacketParserOptions = {}) {
    this.protocolVersion = options.protocolVersion;
    const max = options.maxPacketSize ?? MAX_PACKET_SIZE;
    if (!(max >= 2)) throw new RangeError('maxPacketSize < 2');
    this.maxPacketSize = Math.min(max, MAX_PACKET_SIZE);
    const pairs = options.maxUserProperties ?? DEFAULT_MAX_USER_PROPERTIES;
    if (!(pairs >= 0)) throw new RangeError('maxUserProperties < 0');
    this.maxUserProperties = pairs;
    const levels = options.maxTopicLevels ?? 65_536;
    if (!(levels >= 1)) throw new RangeError('maxTopicLevels < 1');
    this.maxTopicLevels = levels;
    this.head = new Uint8Array(5);
    this.slab = null;
    this.bodyStart = this.limit = this.headerSize = this.slabUsed = 0;
    this.reset();
  }

  /** Bytes held for a packet not complete yet. */
  get bufferedBytes(): number {
    return this.body !== null ? this.bodyLen : this.headLen;
  }

  /** Forgets the partial packet and any failure; keeps the protocol version. */
  reset(): void {
    this.headLen = 0;
    this.body = null;
    this.bodyLen = 0;
    this.total = 0;
    this.failure = null;
    this.failed = false;
  }

  push(chunk: Uint8Array, onPacket: (packet: Packet) => void): void;
  push<C>(chunk: Uint8Array, onPacket: (packet: Packet, context: C) => void, context: C): void;
  push(chunk: Uint8Array, onPacket: OnPacket, context?: unknown): void {
    // Fast path for small pieces in the middle of a packet: copy and return.
    const body = this.body;
    if (body !== null) {
      const n = chunk.length;
      const len = this.bodyLen;
      if (len + n < this.limit) {
        const at = this.bodyStart + len;
        if (n < 16) for (let k = 0; k < n; k++) body[at + k] = chunk[k];
        else body.set(chunk, at);
        this.bodyLen = len + n;
        return;
      }
    }
    if (this.failed) throw this.failure;
    try {
      let i = 0;
      if (this.headLen > 0 || this.body !== null) i = this.continuePartial(chunk, onPacket, context);
      this.parseChunk(chunk, i, onPacket, context);
    } catch (err) {
      this.failed = true;
      this.failure = err;
      this.body = null;
      this.headLen = 0;
      releaseInput();
      throw err;
    }
  }

  /** Parses whole packets from `chunk[i..]` in place; buffers the tail of a partial one. */
  private parseChunk(chunk: Uint8Array, i: number, onPacket: OnPacket, context: unknown): void {
    const n = chunk.length;
    while (i < n) {
      const p = header(chunk, i, n, this.protocolVersion, this.maxPacketSize);
      if (p < 0) {
        // remaining length not complete: keep the header bytes seen so far
        for (let k = i; k < n; k++) this.head[k - i] = chunk[k];
        this.headLen = n - i;
        return;
      }
      const total = p - i + REM;
      if (i + total <= n) {
        this.emit(chunk, i, p, i + total, onPacket, context);
        i += total;
        continue;
      }
      this.startBody(total, p - i);
      this.copyIn(chunk, i, n);
      return;
    }
  }

  /** Continues the partial packet with the start of `chunk`; returns where parsing resumes. */
  private continuePartial(chunk: Uint8Array, onPacket: OnPacket, context: unknown): number {
    let i = 0;
    const n = chunk.length;
    if (this.body === null) {
      // Still reading the remaining length: complete the header (5 bytes at most) in `head`.
      // Short of 5 bytes, header() either finds its end or the chunk ran out.
      const head = this.head;
      const had = this.headLen;
      const more = Math.min(n, 5 - had);
      for (let k = 0; k < more; k++) head[had + k] = chunk[k];
      const p = header(head, 0, had + more, this.protocolVersion, this.maxPacketSize);
      if (p < 0) {
        this.headLen = had + more;
        return n;
      }
      this.headLen = 0;
      this.startBody(p + REM, p);
      this.copyIn(head, 0, p);
      i = p - had;
    }
    const take = Math.min(n - i, this.total - this.bodyLen);
    this.copyIn(chunk, i, i + take);
    i += take;
    if (this.bodyLen === this.total) {
      const buf = this.body as Uint8Array;
      const start = this.bodyStart;
      this.body = null;
      this.bodyLen = 0;
      this.emit(buf, start, start + this.headerSize, start + this.total, onPacket, context);
      releaseInput();
    }
    return i;
  }

  private emit(
    buf: Uint8Array,
    start: number,
    bodyStart: number,
    end: number,
    onPacket: OnPacket,
    context: unknown,
  ): void {
    const packet = decodeBody(buf, start, bodyStart, end, this.protocolVersion, this);
    // A server learns the session's protocol version from its CONNECT.
    if (packet.type === 'connect' && this.protocolVersion === undefined)
      this.protocolVersion = packet.protocolVersion;
    onPacket(packet, context);
  }

  private startBody(total: number, headerSize: number): void {
    this.total = total;
    this.headerSize = headerSize;
    this.bodyLen = 0;
    if (total <= SLAB_PACKET_MAX) {
      // Packets handed out keep views into the slab, so a full slab is left to them (and the
      // garbage collector) and a fresh one taken, never rewritten.
      let slab = this.slab;
      if (slab === null || this.slabUsed + total > slab.length) {
        slab = this.slab = new Uint8Array(SLAB_SIZE);
        this.slabUsed = 0;
      }
      this.body = slab;
      this.bodyStart = this.slabUsed;
      this.slabUsed += total;
      this.limit = total;
      return;
    }
    // Grow with what arrives rather than trusting the header: a peer claiming 256 MB and
    // sending 10 bytes makes us hold about 10 bytes, not 256 MB.
    this.body = new Uint8Array(Math.min(total, 65_536));
    this.bodyStart = 0;
    this.limit = Math.min(total, 65_537);
  }

  private copyIn(src: Uint8Array, from: number, to: number): void {
    const n = to - from;
    let body = this.body as Uint8Array;
    const need = this.bodyLen + n;
    if (this.bodyStart + need > body.length) {
      // only a packet with a buffer of its own grows (slab regions are reserved whole)
      const grown = new Uint8Array(Math.min(this.total, Math.max(need, body.length * 2)));
      grown.set(body.subarray(0, this.bodyLen), 0);
      this.body = body = grown;
      this.limit = Math.min(this.total, grown.length + 1);
    }
    const at = this.bodyStart + this.bodyLen;
    if (n < 16) for (let k = 0; k < n; k++) body[at + k] = src[from + k];
    else body.set(src.subarray(from, to), at);
    this.bodyLen = need;
  }
}

/** The callback as the parser holds it: the context is whatever the caller's push passed. */
type OnPacket = (packet: Packet, context: unknown) => void;

// Module functions, not methods: a bundle minifies their names.

/** The remaining length of the fixed header that header() read last. */
let REM = 0;

/**
 * Checks the fixed header at `buf[i..n)` (first byte, remaining length, size limit): the index
 * after it, with its remaining length in REM, or -1 when the bytes end inside it.
 */
function header(
  buf: Uint8Array,
  i: number,
  n: number,
  version: ProtocolVersion | undefined,
  max: number,
): number {
  checkFirstByte(buf[i], version);
  let rem = 0;
  let mul = 1;
  let p = i + 1;
  for (;;) {
    if (p >= n) return -1;
    const b = buf[p];
    rem += (b & 0x7f) * mul;
    p++;
    if (b < 0x80) {
      if (b === 0 && p - i > 2) varintError(p - i - 1, false);
      break;
    }
    if (p - i === 5) varintError(4, true);
    mul *= 128;
  }
  if (p - i + rem > max) tooLarge(p - i + rem, max);
  REM = rem;
  return p;
}
function varintError(offset: number, tooLong: boolean): never {
  throw new MqttError(tooLong ? 'VARINT_INVALID' : 'VARINT_NOT_MINIMAL', '', 0x81, offset);
}

function tooLarge(total: number, max: number): never {
  throw new MqttError('PACKET_TOO_LARGE', `packet too large: ${total} > ${max} bytes`, 0x95, 0);
}

/**
 * Decodes exactly one whole packet. `version` is the session's protocol (a CONNECT carries
 * its own); `options` as for PacketParser. Throws MqttError when the bytes are not exactly one
 * valid packet.
 */
export function decode(
  bytes: Uint8Array,
  version?: ProtocolVersion,
  options?: Omit<PacketParserOptions, 'protocolVersion'>,
): Packet {
  const parser = new PacketParser(options);
  parser.protocolVersion = version;
  const out: Packet[] = [];
  parser.push(bytes, (p) => out.push(p));
  if (out.length !== 1 || parser.bufferedBytes > 0)
    throw new MqttError(out.length > 0 ? 'TRAILING_BYTES' : 'TRUNCATED', '', 0x81, bytes.length);
  return out[0];
}
