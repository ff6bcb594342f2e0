/**
 * The differential suite's client: one MQTT connection over a real loopback socket that sends
 * exactly the packets a scenario asks for (encoded by @mqtt-edge/codec), answers the broker's
 * QoS 1/2 deliveries itself (or holds the answers, for in-flight windows), and writes what it
 * observes as normalised lines: reason codes, deliveries with QoS, retain and dup flags and
 * properties, the broker's DISCONNECT and the close. Packet ids, timings and assigned client ids
 * are left out, since they differ between two correct brokers.
 */
import net from 'node:net';
import { encode, type Packet, PacketParser, type Properties, type PublishPacket } from '@mqtt-edge/codec';

/** Longer payloads are written as their size. */
const PAYLOAD_CHARS = 40;

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

/** Properties as a stable, readable string ('' when none), keys sorted. */
export function renderProperties(props: Properties | undefined): string {
  if (props === undefined) return '';
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(props).sort()) {
    let value = (props as Record<string, unknown>)[key];
    if (value === undefined) continue;
    if (value instanceof Uint8Array) value = `0x${hex(value)}`;
    // Random per broker, and checked by the spec's rules elsewhere: that one was sent is what counts.
    if (key === 'assignedClientIdentifier') value = '<assigned>';
    // The spec lets a server order them as it likes.
    if (key === 'subscriptionIdentifiers' && Array.isArray(value)) value = [...value].sort((a, b) => a - b);
    out[key] = value;
  }
  return Object.keys(out).length === 0 ? '' : ` ${JSON.stringify(out)}`;
}

export function renderPayload(payload: Uint8Array): string {
  if (payload.length > PAYLOAD_CHARS) return `<${payload.length} bytes>`;
  const text = Buffer.from(payload).toString('utf8');
  return JSON.stringify(text);
}

function renderPublish(p: PublishPacket): string {
  const flags = `q${p.qos}${p.retain ? ' retain' : ''}${p.dup ? ' dup' : ''}`;
  return `msg ${p.topic} ${flags} ${renderPayload(p.payload)}${renderProperties(p.properties)}`;
}

const rc = (code: number | undefined): string => `0x${(code ?? 0).toString(16).padStart(2, '0')}`;

/**
 * The packet's bytes, even where the codec refuses a topic or filter (a PUBLISH to `a/+`, a
 * filter `a/#/b`: scenarios send what a broken client would): encoded with the wildcards
 * swapped for `_`, then the real bytes written back over them.
 */
function encodeAnyway(p: Packet, version: 4 | 5): Uint8Array {
  try {
    return encode(p, version);
  } catch (err) {
    const names =
      p.type === 'publish'
        ? [p.topic]
        : p.type === 'subscribe'
          ? p.subscriptions.map((s) => s.topicFilter)
          : [];
    const swap = (t: string) => t.replace(/[+#]/g, '_');
    if (names.length === 0 || names.every((n) => swap(n) === n)) throw err;
    const placeholder: Packet =
      p.type === 'publish'
        ? { ...p, topic: swap(p.topic) }
        : {
            ...(p as Extract<Packet, { type: 'subscribe' }>),
            subscriptions: (p as Extract<Packet, { type: 'subscribe' }>).subscriptions.map((s) => ({
              ...s,
              topicFilter: swap(s.topicFilter),
            })),
          };
    const bytes = Buffer.from(encode(placeholder, version));
    let from = 0;
    for (const name of names) {
      const at = bytes.indexOf(Buffer.from(swap(name)), from);
      Buffer.from(name).copy(bytes, at);
      from = at + Buffer.byteLength(name);
    }
    return bytes;
  }
}

/** A whole packet's size from its fixed header; undefined until known, 'bad' past 4 length bytes. */
function frameSize(b: Buffer): number | 'bad' | undefined {
  let len = 0;
  for (let i = 1; i <= 4; i++) {
    if (i >= b.length) return undefined;
    len += (b[i] & 0x7f) * 128 ** (i - 1);
    if ((b[i] & 0x80) === 0) return 1 + i + len;
  }
  return 'bad';
}

const ACK_TYPES = { 4: 'puback', 5: 'pubrec', 6: 'pubrel', 7: 'pubcomp' } as const;

/** PUBACK/PUBREC/PUBREL/PUBCOMP read without checking its reason code; undefined for others. */
function lenientAck(bytes: Buffer): Packet | undefined {
  const type = ACK_TYPES[(bytes[0] >> 4) as keyof typeof ACK_TYPES];
  const size = frameSize(bytes);
  if (type === undefined || typeof size !== 'number') return undefined;
  let header = 2;
  while (bytes[header - 1] & 0x80) header++;
  if (bytes.length < header + 2) return undefined;
  const packetId = bytes.readUInt16BE(header);
  const reasonCode = bytes.length > header + 2 ? bytes[header + 2] : undefined;
  return { type, packetId, reasonCode } as Packet;
}

interface Waiter {
  pred: (p: Packet | null) => boolean;
  resolve: (p: Packet | null) => void;
}

/** One observation: a line, and whether it is a delivery (deliveries are sorted by topic). */
export interface Observation {
  line: string;
  delivery: boolean;
  /** For deliveries: the topic and payload, for wait steps. */
  topic?: string;
  payload?: string;
}

export class DiffClient {
  private readonly socket: net.Socket;
  private parser: PacketParser;
  private version: 4 | 5 = 4;
  private readonly waiters: Waiter[] = [];
  private observations: Observation[] = [];
  private nextPacketId = 1;
  private holding = false;
  private held: Packet[] = [];
  /** Topic aliases the broker set towards us (only if a scenario allows them). */
  private readonly aliases = new Map<number, string>();
  /** Every packet but PINGRESP: a settle round is quiet when no client's count moved. */
  received = 0;
  /** The CONNACK said 0 (pings and requests are allowed). */
  connected = false;
  /**
   * A request of ours went unanswered and nothing came since: the broker is not reading this
   * connection (backpressure), so settling does not ping it. Any packet clears it.
   */
  stalled = false;
  isClosed = false;
  private closedByUs = false;

  /** Bytes of a packet not complete yet: packets are cut here and parsed one by one. */
  private pending: Buffer = Buffer.alloc(0);

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.parser = new PacketParser({ protocolVersion: 4 });
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      this.isClosed = true;
      this.connected = false;
      if (!this.closedByUs) this.observe('closed');
      for (const w of this.waiters.splice(0)) w.resolve(null);
    });
  }

  static open(port: number): Promise<DiffClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new DiffClient(s)));
      s.once('error', reject);
    });
  }

  /** What was observed since the last call. */
  take(): Observation[] {
    const out = this.observations;
    this.observations = [];
    return out;
  }

  /**
   * Whole packets go to the codec one at a time, so that one it refuses is known by its bytes:
   * an acknowledgement with a reason code its packet may not carry (Mosquitto sends some) is
   * observed as such and the flow goes on; anything else malformed ends the connection.
   */
  private onData(chunk: Buffer): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    for (;;) {
      const size = frameSize(this.pending);
      if (size === 'bad') {
        this.observe(
          `malformed packet from the broker: bad remaining length ${this.pending.subarray(0, 6).toString('hex')}`,
        );
        this.socket.destroy();
        return;
      }
      if (size === undefined || this.pending.length < size) return;
      const bytes = this.pending.subarray(0, size);
      this.pending = this.pending.subarray(size);
      try {
        this.parser.push(bytes, (p) => this.onPacket(p));
      } catch (err) {
        this.parser = new PacketParser({ protocolVersion: this.version });
        const ack = lenientAck(bytes);
        if (ack === undefined) {
          this.observe(
            `malformed packet from the broker: ${(err as Error).message} (${bytes.subarray(0, 16).toString('hex')})`,
          );
          this.socket.destroy();
          return;
        }
        this.invalidReasonCode = true;
        this.onPacket(ack);
        this.invalidReasonCode = false;
      }
    }
  }

  /** Set while an acknowledgement the codec refused for its reason code is handled. */
  private invalidReasonCode = false;

  /** What was observed since the last take(), left in place. */
  peek(): readonly Observation[] {
    return this.observations;
  }

  private observe(line: string, publish?: PublishPacket): void {
    if (publish === undefined) {
      this.observations.push({ line, delivery: false });
      return;
    }
    this.observations.push({
      line,
      delivery: true,
      topic: publish.topic,
      payload: Buffer.from(publish.payload).toString('utf8'),
    });
  }

  private send(p: Packet): void {
    if (!this.isClosed) this.socket.write(encodeAnyway(p, this.version));
  }

  private packetId(): number {
    const id = this.nextPacketId;
    this.nextPacketId = id === 65_535 ? 1 : id + 1;
    return id;
  }

  private onPacket(p: Packet): void {
    this.stalled = false;
    if (p.type !== 'pingresp') this.received++;
    switch (p.type) {
      case 'connack':
        this.connected = p.reasonCode === 0;
        this.observe(
          `connack ${rc(p.reasonCode)} sp=${p.sessionPresent ? 1 : 0}${renderProperties(p.properties)}`,
        );
        break;
      case 'suback':
        this.observe(`suback [${p.reasonCodes.map(rc).join(',')}]${renderProperties(p.properties)}`);
        break;
      case 'unsuback':
        this.observe(
          `unsuback [${(p.reasonCodes ?? []).map(rc).join(',')}]${renderProperties(p.properties)}`,
        );
        break;
      case 'puback':
      case 'pubrec':
      case 'pubcomp':
        this.observe(
          `${p.type} ${rc(p.reasonCode)}${this.invalidReasonCode ? ` (not a ${p.type.toUpperCase()} reason code)` : ''}${renderProperties(p.properties)}`,
        );
        break;
      case 'publish': {
        const alias = p.properties?.topicAlias;
        if (alias !== undefined) {
          if (p.topic !== '') this.aliases.set(alias, p.topic);
          else p.topic = this.aliases.get(alias) ?? `<unknown alias ${alias}>`;
        }
        this.observe(renderPublish(p), p);
        if (p.qos === 1) this.ack({ type: 'puback', packetId: p.packetId as number });
        else if (p.qos === 2) this.ack({ type: 'pubrec', packetId: p.packetId as number });
        break;
      }
      case 'pubrel':
        // The second half of a QoS 2 delivery: always answered (holding is about the first).
        this.send({ type: 'pubcomp', packetId: p.packetId });
        break;
      case 'disconnect':
        this.observe(`disconnect ${rc(p.reasonCode)}${renderProperties(p.properties)}`);
        break;
      case 'pingresp':
        break;
      default:
        this.observe(`unexpected ${p.type}`);
    }
    for (let i = 0; i < this.waiters.length; i++) {
      const w = this.waiters[i];
      if (w.pred(p)) {
        this.waiters.splice(i--, 1);
        w.resolve(p);
      }
    }
  }

  private ack(p: Packet): void {
    if (this.holding) this.held.push(p);
    else this.send(p);
  }

  /** Stops acknowledging deliveries (`hold`), or sends what was held and acknowledges again. */
  setAcks(mode: 'hold' | 'auto'): void {
    this.holding = mode === 'hold';
    if (!this.holding) for (const p of this.held.splice(0)) this.send(p);
  }

  /** The first packet `pred` accepts, or null on close; `timeout` after `ms`. */
  waitFor(pred: (p: Packet) => boolean, ms: number): Promise<Packet | null | 'timeout'> {
    if (this.isClosed) return Promise.resolve(null);
    return new Promise((resolve) => {
      const w: Waiter = {
        pred: (p) => p === null || pred(p),
        resolve: (p) => {
          clearTimeout(timer);
          resolve(p);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        resolve('timeout');
      }, ms);
      this.waiters.push(w);
    });
  }

  /** Sends CONNECT; resolves once the CONNACK or the close came (or `ms` passed: observed). */
  async connect(connect: Extract<Packet, { type: 'connect' }>, ms: number): Promise<void> {
    this.version = connect.protocolVersion === 5 ? 5 : 4;
    this.parser = new PacketParser({ protocolVersion: this.version });
    const answer = this.waitFor((p) => p.type === 'connack', ms);
    this.send(connect);
    if ((await answer) === 'timeout') this.observe('no connack (timeout)');
  }

  async subscribe(
    subscriptions: Extract<Packet, { type: 'subscribe' }>['subscriptions'],
    props?: Properties,
  ) {
    const packetId = this.packetId();
    await this.request({ type: 'subscribe', packetId, subscriptions, properties: props }, 'suback', packetId);
  }

  async unsubscribe(topicFilters: string[]) {
    const packetId = this.packetId();
    await this.request({ type: 'unsubscribe', packetId, topicFilters }, 'unsuback', packetId);
  }

  /**
   * PUBLISH and, for QoS 1/2, its whole flow (PUBREL sent after a PUBREC below 0x80). False
   * when an acknowledgement did not come in `ms`.
   */
  async publish(p: Omit<PublishPacket, 'type' | 'dup' | 'packetId'>, ms: number): Promise<boolean> {
    if (p.qos === 0) {
      this.send({ type: 'publish', dup: false, ...p });
      return true;
    }
    const packetId = this.packetId();
    const first = await this.request(
      { type: 'publish', dup: false, packetId, ...p },
      p.qos === 1 ? 'puback' : 'pubrec',
      packetId,
      ms,
    );
    if (first === 'timeout') return false;
    if (p.qos === 2 && first !== null && ((first as { reasonCode?: number }).reasonCode ?? 0) < 0x80)
      return (await this.request({ type: 'pubrel', packetId }, 'pubcomp', packetId, ms)) !== 'timeout';
    return true;
  }

  private async request(
    p: Packet,
    answer: Packet['type'],
    packetId: number,
    ms = 3000,
  ): Promise<Packet | null | 'timeout'> {
    const got = this.waitFor(
      (x) => x.type === answer && (x as { packetId?: number }).packetId === packetId,
      ms,
    );
    this.send(p);
    const r = await got;
    if (r === 'timeout') {
      this.observe(`no ${answer} (timeout)`);
      this.stalled = true;
    }
    return r;
  }

  /** PINGREQ until PINGRESP, or the close. False when neither came within `ms` (observed). */
  async ping(ms = 3000): Promise<boolean> {
    if (!this.connected || this.isClosed) return true;
    const pong = this.waitFor((p) => p.type === 'pingresp', ms);
    this.send({ type: 'pingreq' });
    const r = await pong;
    if (r === 'timeout') this.observe('no pingresp (timeout)');
    return r !== 'timeout';
  }

  /** DISCONNECT (5.0: with `reason`), then our end closes; resolves at the close. */
  async disconnect(
    reason: number | undefined,
    properties: Properties | undefined,
    ms: number,
  ): Promise<void> {
    this.closedByUs = true;
    this.connected = false;
    if (this.isClosed) return;
    const closed = this.waitFor(() => false, ms);
    this.send({ type: 'disconnect', reasonCode: reason, properties });
    this.socket.end();
    if ((await closed) === 'timeout') this.socket.destroy();
  }

  /** The socket goes without DISCONNECT, as on a network failure. */
  drop(): void {
    this.closedByUs = true;
    this.connected = false;
    this.socket.destroy();
  }
}
