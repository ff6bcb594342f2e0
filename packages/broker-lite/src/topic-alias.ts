/**
 * Outbound topic aliases (MQTT 5 section 3.3.2.3.4): towards a client whose CONNECT allows them,
 * a topic it receives often is named once with an alias and then costs the alias alone (3 bytes
 * of property against 2 + its length). Mosquitto never sends them.
 *
 * The policy, bounded in memory and work per connection:
 * - at most min(the client's Topic Alias Maximum, `max_topic_alias_out`, default 32) aliases;
 * - while one is free, each new topic (4 to 1,024 characters: shorter ones gain nothing, longer
 *   ones would make the table big) takes the next one;
 * - once all are taken, topics sent without one are counted (at most twice as many topics as
 *   aliases, for the current window of 256 deliveries); at the end of a window, each counted
 *   topic sent more often in it than the least-used alias was (alias uses decay by half each
 *   window) takes that alias over, the most frequent first. So the aliases follow the topics the
 *   client receives most, and a topic needs about twice the rate of the one it displaces: equals
 *   do not swap back and forth.
 * A topic is named (topic and alias) the first time its alias is used, alias only after that.
 * Aliases live as long as the network connection (the spec's rule); a re-sent message (DUP)
 * goes without one.
 */

/** Default of `max_topic_alias_out`. */
export const OUT_ALIAS_LIMIT = 32;
/** Largest `max_topic_alias_out`. */
export const MAX_OUT_ALIAS_LIMIT = 1024;
/** Deliveries to one connection between two reviews of which topics hold its aliases. */
export const ALIAS_WINDOW = 256;
/** Topics shorter than this (characters) are sent as they are: an alias would not be smaller. */
const MIN_ALIASED_TOPIC = 4;
/** Topics longer than this (characters) are not aliased: an alias table holds little. */
export const MAX_ALIASED_TOPIC = 1024;
/** `lookup` result bit: the topic must be named along with its alias (its first use). */
export const NAME_TOPIC = 0x10000;

export class OutAliases {
  /** Aliases this connection may use: 1..max. */
  readonly max: number;
  private readonly byTopic = new Map<string, number>();
  /** alias -> topic (index 0 unused). */
  private readonly topics: Array<string | undefined>;
  /** Uses of each alias, halved at every review. */
  private readonly hits: Uint32Array;
  /** 1 once the client was told the alias's topic. */
  private readonly named: Uint8Array;
  private assigned = 0;
  private sends = 0;
  /** Sends of topics without an alias in this window, once every alias is taken. */
  private candidates: Map<string, number> | null = null;

  constructor(max: number) {
    this.max = max;
    this.topics = new Array<string | undefined>(max + 1);
    this.hits = new Uint32Array(max + 1);
    this.named = new Uint8Array(max + 1);
  }

  /**
   * The alias to send `topic` with: 0 for none, else the alias, with NAME_TOPIC set when the
   * topic goes along (the first use; `unname` it again if that PUBLISH is not sent after all).
   */
  lookup(topic: string): number {
    if (++this.sends >= ALIAS_WINDOW) this.review();
    const alias = this.byTopic.get(topic);
    if (alias !== undefined) {
      this.hits[alias]++;
      if (this.named[alias] === 1) return alias;
      this.named[alias] = 1;
      return alias | NAME_TOPIC;
    }
    const n = topic.length;
    if (n < MIN_ALIASED_TOPIC || n > MAX_ALIASED_TOPIC) return 0;
    if (this.assigned < this.max) {
      const a = ++this.assigned;
      this.topics[a] = topic;
      this.byTopic.set(topic, a);
      this.hits[a] = 1;
      this.named[a] = 1;
      return a | NAME_TOPIC;
    }
    let c = this.candidates;
    if (c === null) c = this.candidates = new Map();
    const count = c.get(topic);
    if (count !== undefined) c.set(topic, count + 1);
    else if (c.size < 2 * this.max) c.set(topic, 1);
    return 0;
  }

  /** The PUBLISH that would have named `alias`'s topic was not sent: the next use names it. */
  unname(alias: number): void {
    this.named[alias] = 0;
  }

  /** Topics counted in the window take over the least-used aliases, when used more. */
  private review(): void {
    this.sends = 0;
    const hits = this.hits;
    const c = this.candidates;
    if (c !== null && c.size > 0) {
      const ranked = [...c].sort((x, y) => y[1] - x[1]);
      const aliases: number[] = [];
      for (let a = 1; a <= this.assigned; a++) aliases.push(a);
      aliases.sort((x, y) => hits[x] - hits[y]);
      const n = Math.min(ranked.length, aliases.length);
      for (let i = 0; i < n; i++) {
        const [topic, count] = ranked[i];
        const a = aliases[i];
        if (count <= hits[a]) break;
        this.byTopic.delete(this.topics[a] as string);
        this.topics[a] = topic;
        this.byTopic.set(topic, a);
        hits[a] = count;
        this.named[a] = 0;
      }
      c.clear();
    }
    for (let a = 1; a <= this.assigned; a++) hits[a] >>>= 1;
  }
}

/**
 * Copies the MQTT 5 PUBLISH `src` (as the codec encodes it: topic name, packet id when QoS > 0,
 * properties without a topic alias) into `conn`'s output with the topic alias property first and
 * the topic name emptied unless NAME_TOPIC is set, and packet id `pid`. Returns false, writing
 * nothing, when the result is larger than the client accepts (`maxOut`).
 */
export function writeAliased(
  out: { reserve(n: number): number; readonly outBuffer: Uint8Array },
  src: Uint8Array,
  code: number,
  qos: number,
  pid: number,
  maxOut: number,
): boolean {
  // fixed header and remaining length
  let h = 1;
  while (src[h] & 0x80) h++;
  h++;
  const topicLen = (src[h] << 8) | src[h + 1];
  let p = h + 2 + topicLen;
  if (qos > 0) p += 2;
  let propLen = 0;
  let mul = 1;
  let q = p;
  for (;;) {
    const byte = src[q++];
    propLen += (byte & 0x7f) * mul;
    if ((byte & 0x80) === 0) break;
    mul *= 128;
  }
  const named = code > 0xffff;
  const alias = code & 0xffff;
  const newPropLen = propLen + 3;
  const rest = src.length - q; // properties and payload
  const topicPart = named ? 2 + topicLen : 2;
  const remaining = topicPart + (qos > 0 ? 2 : 0) + varintSize(newPropLen) + 3 + rest;
  const total = 1 + varintSize(remaining) + remaining;
  if (total > maxOut) return false;
  const at = out.reserve(total);
  if (at < 0) return true; // closed: nothing goes out anyway
  const o = out.outBuffer;
  let i = at;
  o[i++] = src[0];
  i = writeVarint(o, i, remaining);
  if (named) {
    o.set(src.subarray(h, h + 2 + topicLen), i);
    i += 2 + topicLen;
  } else {
    o[i++] = 0;
    o[i++] = 0;
  }
  if (qos > 0) {
    o[i++] = pid >> 8;
    o[i++] = pid & 0xff;
  }
  i = writeVarint(o, i, newPropLen);
  o[i++] = 0x23;
  o[i++] = alias >> 8;
  o[i++] = alias & 0xff;
  o.set(src.subarray(q), i);
  return true;
}

function varintSize(n: number): number {
  return n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4;
}

function writeVarint(o: Uint8Array, at: number, n: number): number {
  let i = at;
  let v = n;
  do {
    let byte = v % 128;
    v = Math.floor(v / 128);
    if (v > 0) byte |= 0x80;
    o[i++] = byte;
  } while (v > 0);
  return i;
}
