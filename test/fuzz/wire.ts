/**
 * Recipes to bytes: valid packets from the codec's encoder, then the mutators' damage; packets
 * the encoder refuses to make (duplicate or misplaced properties, millions of them) are framed
 * by hand here; and the raw HTTP upgrade and WebSocket frames of `ws-raw` connections.
 */
import { type ConnectPacket, encode, type Packet, type ProtocolVersion } from '@mqtt-edge/codec';
import type {
  ConnectRecipe,
  Delivery,
  Mutation,
  PacketRecipe,
  RawProperty,
  Who,
  WsFrameRecipe,
} from './recipes.ts';

/** The passwords of the run's users (made fresh for each run). */
export interface Credentials {
  alice: string;
  bob: string;
  probe: string;
  keeper: string;
}

const text = new TextEncoder();

function login(who: Who, creds: Credentials): { username?: string; password?: string } {
  switch (who) {
    case 'alice':
      return { username: 'alice', password: creds.alice };
    case 'bob':
      return { username: 'bob', password: creds.bob };
    case 'alice-bad-password':
      return { username: 'alice', password: `${creds.alice}x` };
    case 'alice-no-password':
      return { username: 'alice' };
    case 'unknown-user':
      return { username: 'mallory', password: 'x' };
    case 'anonymous':
      return {};
    case 'probe-bad-password':
      return { username: 'probe', password: 'guess' };
  }
}

/** Who a connection logs in as, as far as its first packet tells. */
export type Login =
  | { kind: 'user'; user: string; clientId: string }
  /** Credentials the broker must refuse. */
  | { kind: 'refused'; who: Who }
  /** Not a CONNECT the fuzz can read (mutated, garbage): whatever the broker decides. */
  | { kind: 'unknown' };

function loginAs(who: Who, clientId: string): Login {
  return who === 'alice' || who === 'bob' ? { kind: 'user', user: who, clientId } : { kind: 'refused', who };
}

/** The login of a connection whose first packet is `r`. */
export function loginOf(r: PacketRecipe): Login {
  if (r.k === 'connect') return loginAs(r.who, r.clientId);
  if ((r.k === 'manyProps' || r.k === 'rawProps') && r.in === 'connect') return loginAs(r.who, 'fz1');
  if (r.k === 'deepTopic' && r.in === 'will') return loginAs('alice', 'fz2');
  return { kind: 'unknown' };
}

/** The protocol level of the CONNECT that `r` makes (hand-framed ones are MQTT 5). */
export function connectVersion(r: PacketRecipe, version: ProtocolVersion): ProtocolVersion {
  if (r.k === 'connect') return r.version ?? version;
  if ((r.k === 'manyProps' || r.k === 'rawProps') && r.in === 'connect') return 5;
  return version;
}

export function connectPacket(r: ConnectRecipe, version: ProtocolVersion, creds: Credentials): ConnectPacket {
  const { username, password } = login(r.who, creds);
  const p: ConnectPacket = {
    type: 'connect',
    protocolVersion: r.version ?? version,
    clientId: r.clientId,
    clean: r.clean,
    keepalive: r.keepalive,
  };
  if (username !== undefined) p.username = username;
  if (password !== undefined) p.password = text.encode(password);
  if (r.will !== undefined) p.will = { ...r.will };
  if (r.properties !== undefined) p.properties = r.properties;
  return p;
}

/**
 * The codec's bytes for `p`. A packet that protocol `v` cannot carry (AUTH in 3.1.1) is sent
 * as MQTT 5 bytes on that connection: a wrong packet is what the fuzz wants anyway.
 */
function encodeFor(p: Packet, v: ProtocolVersion): Uint8Array {
  try {
    return encode(p, v);
  } catch (err) {
    if (v === 5) throw err;
    return encode(p, 5);
  }
}

/** One array of all `parts` (Buffer.concat: a Uint8Array). */
const concat = (parts: Uint8Array[]): Uint8Array => Buffer.concat(parts);

export function varint(n: number): Uint8Array {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Uint8Array.from(out);
}

function u16(n: number): Uint8Array {
  return Uint8Array.of((n >> 8) & 0xff, n & 0xff);
}

function str(s: string): Uint8Array {
  const b = text.encode(s);
  return concat([u16(b.length), b]);
}

/** A packet framed by hand: first byte, remaining length, body. */
function frame(first: number, body: Uint8Array[]): Uint8Array {
  const b = concat(body);
  return concat([Uint8Array.of(first), varint(b.length), b]);
}

// ------------------------------------------------------------------------------- mutations

function pos(per: number, len: number): number {
  return Math.min(len - 1, Math.floor((per / 1000) * len));
}

/** Where the fixed header ends, or -1 when the bytes do not hold one. */
function headerEnd(b: Uint8Array): { end: number; rem: number } | undefined {
  let rem = 0;
  let mul = 1;
  for (let i = 1; i < Math.min(b.length, 5); i++) {
    rem += (b[i] & 0x7f) * mul;
    mul *= 128;
    if (b[i] < 0x80) return { end: i + 1, rem };
  }
  return undefined;
}

export function mutate(bytes: Uint8Array, m: Mutation): Uint8Array {
  // A copy (a Buffer's slice() would be a view).
  const b = new Uint8Array(bytes);
  if (b.length === 0) return m.m === 'append' ? new Uint8Array(m.bytes) : b;
  switch (m.m) {
    case 'flip':
      b[pos(m.at, b.length)] ^= 1 << m.bit;
      return b;
    case 'truncate':
      return b.subarray(0, Math.floor((m.keep / 1000) * b.length));
    case 'flags':
      b[0] = (b[0] & 0xf0) | m.nibble;
      return b;
    case 'type':
      b[0] = (m.type << 4) | (b[0] & 0x0f);
      return b;
    case 'u16': {
      const at = pos(m.at, b.length);
      if (at + 1 < b.length) b.set(u16(m.value), at);
      return b;
    }
    case 'append':
      return concat([b, m.bytes]);
    case 'length': {
      const h = headerEnd(b);
      if (h === undefined) return b;
      const body = b.subarray(h.end);
      let len: Uint8Array;
      if (m.lie === 'grow') len = varint(Math.min(268_435_455, h.rem + m.by));
      else if (m.lie === 'shrink') len = varint(Math.max(0, h.rem - m.by));
      else if (m.lie === 'max') len = varint(268_435_455);
      else if (m.lie === 'overlong') len = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0x7f);
      else {
        // The same value with a needless continuation byte (not minimal: malformed).
        const v = varint(h.rem);
        len =
          v.length < 4 ? concat([v.map((x, i) => (i === v.length - 1 ? x | 0x80 : x)), Uint8Array.of(0)]) : v;
      }
      return concat([b.subarray(0, 1), len, body]);
    }
  }
}

// ---------------------------------------------------------------------- hand-framed MQTT 5

const BYTE_PROPS = new Set([0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2a]);
const U16_PROPS = new Set([0x13, 0x21, 0x22, 0x23]);
const U32_PROPS = new Set([0x02, 0x11, 0x18, 0x27]);
const TEXT_PROPS = new Set([0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1a, 0x1c, 0x1f]);

function propertyBytes(p: RawProperty): Uint8Array {
  const id = Uint8Array.of(p.id);
  const n = typeof p.value === 'number' ? p.value : 0;
  if (BYTE_PROPS.has(p.id)) return concat([id, Uint8Array.of(n & 0xff)]);
  if (U16_PROPS.has(p.id)) return concat([id, u16(n)]);
  if (U32_PROPS.has(p.id)) return concat([id, u16(Math.floor(n / 65536)), u16(n % 65536)]);
  if (p.id === 0x0b) return concat([id, varint(n)]);
  if (TEXT_PROPS.has(p.id)) return concat([id, str(String(p.value))]);
  if (p.id === 0x26) {
    const [k, v = ''] = String(p.value).split('=');
    return concat([id, str(k), str(v)]);
  }
  return concat([id, Uint8Array.of(n & 0xff)]);
}

/** `count` copies of one property, made with one fill rather than `count` arrays. */
function repeated(unit: Uint8Array, count: number): Uint8Array {
  const out = new Uint8Array(unit.length * count);
  out.set(unit);
  for (let filled = unit.length; filled < out.length; filled *= 2)
    out.copyWithin(filled, 0, Math.min(filled, out.length - filled));
  return out;
}

const UNITS = {
  user: Uint8Array.of(0x26, 0, 0, 0, 0),
  userLong: Uint8Array.of(0x26, 0, 1, 0x6b, 0, 1, 0x76),
  subscriptionId: Uint8Array.of(0x0b, 0x01),
  correlation: Uint8Array.of(0x09, 0, 1, 0x78),
};

/** An MQTT 5 packet of kind `kind` with `props` (without its length) as its property block. */
function withProperties(
  kind: 'connect' | 'publish' | 'subscribe' | 'puback' | 'disconnect',
  props: Uint8Array,
  who: Who,
  creds: Credentials,
): Uint8Array {
  const block = [varint(props.length), props];
  switch (kind) {
    case 'connect': {
      const { username, password } = login(who, creds);
      const flags = 0x02 | (username !== undefined ? 0x80 : 0) | (password !== undefined ? 0x40 : 0);
      return frame(0x10, [
        str('MQTT'),
        Uint8Array.of(5, flags, 0, 60),
        ...block,
        str('fz1'),
        ...(username !== undefined ? [str(username)] : []),
        ...(password !== undefined ? [str(password)] : []),
      ]);
    }
    case 'publish':
      return frame(0x32, [str('alice/p'), u16(1), ...block, text.encode('x')]);
    case 'subscribe':
      return frame(0x82, [u16(1), ...block, str('alice/#'), Uint8Array.of(1)]);
    case 'puback':
      return frame(0x40, [u16(1), Uint8Array.of(0), ...block]);
    case 'disconnect':
      return frame(0xe0, [Uint8Array.of(0), ...block]);
  }
}

/** A topic of `levels` levels under alice/ (at most 65,535 bytes, as MQTT allows). */
function deepTopic(levels: number, last: string): string {
  return `alice${'/a'.repeat(Math.max(0, levels - 2))}/${last}`;
}

function burstPacket(what: 'publish1' | 'publish2' | 'subscribe' | 'sharedChurn', i: number): Packet {
  const packetId = (i % 65_535) + 1;
  if (what === 'subscribe')
    return { type: 'subscribe', packetId, subscriptions: [{ topicFilter: `alice/s/${i}`, qos: 1 }] };
  if (what === 'sharedChurn') {
    const topicFilter = `$share/g${i >> 1}/alice/s`;
    return i % 2 === 0
      ? { type: 'subscribe', packetId, subscriptions: [{ topicFilter, qos: 1 }] }
      : { type: 'unsubscribe', packetId, topicFilters: [topicFilter] };
  }
  const qos = what === 'publish1' ? 1 : 2;
  return {
    type: 'publish',
    topic: 'alice/b',
    payload: text.encode(String(i)),
    qos,
    retain: false,
    dup: false,
    packetId,
  };
}

export function packetBytes(r: PacketRecipe, version: ProtocolVersion, creds: Credentials): Uint8Array {
  switch (r.k) {
    case 'connect':
      return encodeFor(connectPacket(r, version, creds), version);
    case 'packet':
      return encodeFor(r.p, version);
    case 'mutated': {
      let b = packetBytes(r.base, version, creds);
      for (const m of r.muts) b = mutate(b, m);
      return b;
    }
    case 'manyProps':
      return withProperties(r.in, repeated(UNITS[r.prop], r.count), r.who, creds);
    case 'rawProps':
      return withProperties(r.in, concat(r.props.map(propertyBytes)), r.who, creds);
    case 'deepTopic': {
      if (r.in === 'publish')
        return encodeFor(
          {
            type: 'publish',
            topic: deepTopic(r.levels, 'p'),
            payload: text.encode('deep'),
            qos: 1,
            retain: true,
            dup: false,
            packetId: 7,
          },
          version,
        );
      if (r.in === 'will')
        return encodeFor(
          {
            type: 'connect',
            protocolVersion: version,
            clientId: 'fz2',
            clean: true,
            keepalive: 60,
            username: 'alice',
            password: text.encode(creds.alice),
            will: { topic: deepTopic(r.levels, 'w'), payload: text.encode('w'), qos: 1, retain: true },
          },
          version,
        );
      const filters = Array.from({ length: r.filters }, (_, i) => deepTopic(r.levels, String(i)));
      if (r.in === 'subscribe')
        return encodeFor(
          {
            type: 'subscribe',
            packetId: 8,
            subscriptions: filters.map((topicFilter) => ({ topicFilter, qos: 1 })),
          },
          version,
        );
      return encodeFor({ type: 'unsubscribe', packetId: 9, topicFilters: filters }, version);
    }
    case 'bigPublish':
      return encodeFor(
        {
          type: 'publish',
          topic: r.topic,
          payload: new Uint8Array(r.bytes).fill(0x61),
          qos: r.qos,
          retain: false,
          dup: false,
          packetId: r.qos > 0 ? 11 : undefined,
        },
        version,
      );
    case 'garbage':
      return r.bytes;
    case 'burst':
      return concat(Array.from({ length: r.count }, (_, i) => encodeFor(burstPacket(r.what, i), version)));
    case 'claim':
      return concat([Uint8Array.of(r.first), varint(r.claim), new Uint8Array(r.send).fill(0x61)]);
  }
}

// ---------------------------------------------------------------------------- WebSocket raw

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

export function upgradeRequest(kind: string): Uint8Array {
  const lines = [
    'GET /mqtt HTTP/1.1',
    'Host: 127.0.0.1',
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Key: ${KEY}`,
    `Sec-WebSocket-Version: ${kind === 'bad-version' ? 99 : 13}`,
  ];
  if (kind !== 'no-subprotocol') lines.push('Sec-WebSocket-Protocol: mqtt');
  if (kind === 'huge-header') lines.push(`X-Pad: ${'a'.repeat(100_000)}`);
  if (kind === 'garbage') return text.encode('\u0016\u0003\u0001 NOT HTTP\r\n\r\n');
  return text.encode(`${lines.join('\r\n')}\r\n${kind === 'no-end' ? '' : '\r\n'}`);
}

/**
 * A client frame. A masked one uses the key 0 (any key will do for the server, and XOR with 0
 * leaves a 64 MB payload as it is, with no copy).
 */
export function wsFrame(f: WsFrameRecipe, creds: Credentials): Uint8Array {
  const payload =
    'fill' in f.payload ? new Uint8Array(f.payload.fill).fill(0x61) : packetBytes(f.payload, 4, creds);
  const len = payload.length + f.extraClaim;
  const head: number[] = [(f.fin ? 0x80 : 0) | (f.opcode & 0x0f)];
  const mask = f.masked ? 0x80 : 0;
  if (len < 126) head.push(mask | len);
  else if (len < 65_536) head.push(mask | 126, len >> 8, len & 0xff);
  else
    head.push(mask | 127, 0, 0, 0, 0, (len >>> 24) & 0xff, (len >> 16) & 0xff, (len >> 8) & 0xff, len & 0xff);
  if (f.masked) head.push(0, 0, 0, 0);
  return concat([Uint8Array.from(head), payload]);
}

// ------------------------------------------------------------------------------- delivery

/** The writes that deliver `bytes`, each with the pause before it. */
export function pieces(bytes: Uint8Array, how: Delivery): Array<{ bytes: Uint8Array; gapMs: number }> {
  if (how.d === 'whole' || bytes.length <= 1) return [{ bytes, gapMs: 0 }];
  const out: Array<{ bytes: Uint8Array; gapMs: number }> = [];
  if (how.d === 'split') {
    const size = Math.max(1, Math.ceil(bytes.length / how.parts));
    for (let at = 0; at < bytes.length; at += size)
      out.push({ bytes: bytes.subarray(at, at + size), gapMs: 0 });
    return out;
  }
  let at = 0;
  for (let i = 0; i < how.chunks && at < bytes.length; i++, at += how.size)
    out.push({ bytes: bytes.subarray(at, at + how.size), gapMs: i === 0 ? 0 : how.gapMs });
  if (at < bytes.length) out.push({ bytes: bytes.subarray(at), gapMs: how.gapMs });
  return out;
}

export function disconnectBytes(version: ProtocolVersion): Uint8Array {
  return encode({ type: 'disconnect' }, version);
}
