/**
 * What the status page knows, built from the messages it receives; no DOM here (unit-tested in
 * Node). Topics read (docs: packages/broker-lite/README.md, "Status page"):
 *
 *   $SYS/broker/...                        the broker: clients, subscriptions, counters (rates)
 *   $SYS/broker/connection/ID/...          bridges: state (1/0), bridge_state, queue, counters
 *   PREFIX/_agent/ID/status                an agent: online / offline (its will)
 *   PREFIX/_agent/ID/health                an agent: JSON counters (queue depth, framing errors)
 *   PREFIX/DEVICE/status                   a device: online / offline
 *   PREFIX/DEVICE/SENSOR                   a reading: JSON {id, device, sensor, value, unit, ...}
 */

/** How far back each channel's chart goes. */
export const CHART_WINDOW_MS = 5 * 60_000;
/** The shortest span a chart shows (a page open for seconds charts its first minute). */
export const CHART_MIN_SPAN_MS = 60_000;

/** Where a chart of `s` starts: the window, or less while the page has seen less of it. */
export function chartStart(s: Series, now: number): number {
  const oldest = s.oldest();
  const start = now - CHART_WINDOW_MS;
  if (oldest === undefined) return start;
  return Math.max(start, Math.min(oldest, now - CHART_MIN_SPAN_MS));
}
/** Points kept per channel (a reading a second fills the window twice over). */
export const CHART_POINTS = 600;
/** Readings per second are counted over this window. */
export const RATE_WINDOW_MS = 10_000;

/** A fixed-size ring of (time, value) points. */
export class Series {
  readonly t: Float64Array;
  readonly v: Float64Array;
  private start = 0;
  length = 0;
  constructor(readonly capacity = CHART_POINTS) {
    this.t = new Float64Array(capacity);
    this.v = new Float64Array(capacity);
  }
  push(t: number, v: number): void {
    const i = (this.start + this.length) % this.capacity;
    this.t[i] = t;
    this.v[i] = v;
    if (this.length < this.capacity) this.length++;
    else this.start = (this.start + 1) % this.capacity;
  }
  /** Time of the oldest point kept. */
  oldest(): number | undefined {
    return this.length === 0 ? undefined : this.t[this.start];
  }
  /** The points from `since` on, oldest first. */
  since(since: number): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (let k = 0; k < this.length; k++) {
      const i = (this.start + k) % this.capacity;
      if (this.t[i] >= since) out.push([this.t[i], this.v[i]]);
    }
    return out;
  }
}

export interface Channel {
  sensor: string;
  unit: string | undefined;
  value: number | string | boolean | undefined;
  /** Page clock (ms) of the last reading. */
  at: number;
  series: Series;
}

export interface Device {
  key: string;
  prefix: string;
  name: string;
  /** From PREFIX/DEVICE/status; undefined until one is seen. */
  online: boolean | undefined;
  channels: Map<string, Channel>;
  /** Receipt times of recent readings (for readings per second). */
  recent: number[];
  /** When the page first saw a reading of it. */
  firstReading: number;
  /** The agent whose health lists this device, and its port. */
  agent: string | undefined;
  port: string | undefined;
  /** From the agent's health, when it reports them per port. */
  framingErrors: number | undefined;
  updated: number;
}

export interface AgentHealth {
  queue?: { count?: number; bytes?: number; oldestAgeMs?: number; failed?: boolean };
  reconnects?: number;
  uptimeS?: number;
  ports?: Array<{ name?: string; state?: string; device?: string; counters?: Record<string, number> }>;
  counters?: Record<string, number>;
}

export interface Agent {
  key: string;
  prefix: string;
  id: string;
  online: boolean | undefined;
  health: AgentHealth | undefined;
  healthAt: number;
}

export interface Bridge {
  name: string;
  values: Map<string, string>;
}

/** A broker counter with its last two samples, in the broker's uptime seconds. */
interface Sampled {
  value: number;
  at: number;
  prevValue: number;
  prevAt: number;
}

/** Counters shown as rates (per second). */
export const RATE_COUNTERS = [
  'publish/messages/received',
  'publish/messages/sent',
  'messages/dropped',
  'bytes/received',
  'bytes/sent',
] as const;

const decoder = new TextDecoder();

export function payloadText(payload: Uint8Array): string {
  return decoder.decode(payload);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export class Model {
  /** `$SYS/broker/NAME` payloads (bridges apart). */
  readonly broker = new Map<string, string>();
  private readonly sampled = new Map<string, Sampled>();
  /** The broker's uptime in seconds, from its last `uptime`. */
  uptime = -1;
  readonly bridges = new Map<string, Bridge>();
  readonly agents = new Map<string, Agent>();
  readonly devices = new Map<string, Device>();
  /** Topic prefixes of the agents seen (each is then subscribed to). */
  readonly prefixes = new Set<string>();
  /** Subscriptions the broker refused (its ACL): shown, so an empty page explains itself. */
  readonly refused = new Set<string>();
  readings = 0;
  /** Called once per new agent prefix. */
  onPrefix: (prefix: string) => void = () => {};

  /** One message; returns whether anything shown changed. */
  message(topic: string, payload: Uint8Array, now: number): boolean {
    if (topic.startsWith('$SYS/broker/')) return this.sys(topic.slice(12), payloadText(payload));
    const agentAt = topic.indexOf('/_agent/');
    if (agentAt > 0)
      return this.agentMessage(topic.slice(0, agentAt), topic.slice(agentAt + 8), payload, now);
    for (const prefix of this.prefixes) {
      if (topic.length > prefix.length + 1 && topic.startsWith(prefix) && topic[prefix.length] === '/')
        return this.deviceMessage(prefix, topic.slice(prefix.length + 1), payload, now);
    }
    return false;
  }

  private sys(name: string, text: string): boolean {
    if (name.startsWith('connection/')) {
      const rest = name.slice(11);
      const slash = rest.indexOf('/');
      if (slash <= 0) return false;
      const bridgeName = rest.slice(0, slash);
      let b = this.bridges.get(bridgeName);
      if (b === undefined) {
        b = { name: bridgeName, values: new Map() };
        this.bridges.set(bridgeName, b);
      }
      b.values.set(rest.slice(slash + 1), text);
      return true;
    }
    this.broker.set(name, text);
    if (name === 'uptime') {
      const s = Number.parseInt(text, 10);
      if (Number.isFinite(s)) this.uptime = s;
    } else if ((RATE_COUNTERS as readonly string[]).includes(name)) {
      const v = Number(text);
      if (!Number.isFinite(v)) return true;
      const prev = this.sampled.get(name);
      this.sampled.set(
        name,
        prev === undefined
          ? { value: v, at: this.uptime, prevValue: Number.NaN, prevAt: Number.NaN }
          : { value: v, at: this.uptime, prevValue: prev.value, prevAt: prev.at },
      );
    }
    return true;
  }

  /**
   * Per second, from the broker's last two samples of a counter. `$SYS` values are published
   * only when they change, after `uptime` in each round: a counter not sent in the latest round
   * did not move (0/s). Undefined until two samples are in.
   */
  rate(name: (typeof RATE_COUNTERS)[number]): number | undefined {
    const s = this.sampled.get(name);
    if (s === undefined) return undefined;
    if (this.uptime > s.at) return 0;
    if (!Number.isFinite(s.prevAt) || s.at <= s.prevAt) return undefined;
    return (s.value - s.prevValue) / (s.at - s.prevAt);
  }

  private agentMessage(prefix: string, rest: string, payload: Uint8Array, now: number): boolean {
    const slash = rest.indexOf('/');
    if (slash <= 0) return false;
    const id = rest.slice(0, slash);
    const leaf = rest.slice(slash + 1);
    if (leaf !== 'status' && leaf !== 'health') return false;
    if (!this.prefixes.has(prefix)) {
      this.prefixes.add(prefix);
      this.onPrefix(prefix);
    }
    const key = `${prefix}/${id}`;
    let a = this.agents.get(key);
    if (a === undefined) {
      a = { key, prefix, id, online: undefined, health: undefined, healthAt: 0 };
      this.agents.set(key, a);
    }
    const text = payloadText(payload);
    if (leaf === 'status') {
      a.online = text === 'online' ? true : text === 'offline' ? false : undefined;
      return true;
    }
    let health: unknown;
    try {
      health = JSON.parse(text);
    } catch {
      return false;
    }
    if (!isRecord(health)) return false;
    a.health = health as AgentHealth;
    a.healthAt = now;
    const ports = a.health.ports;
    if (Array.isArray(ports)) {
      for (const p of ports) {
        if (!isRecord(p) || typeof p.device !== 'string') continue;
        const d = this.device(prefix, p.device, now);
        d.agent = id;
        d.port = typeof p.name === 'string' ? p.name : undefined;
        const fe = isRecord(p.counters) ? p.counters.framingErrors : undefined;
        d.framingErrors = typeof fe === 'number' ? fe : undefined;
      }
    }
    return true;
  }

  private device(prefix: string, name: string, now: number): Device {
    const key = `${prefix}/${name}`;
    let d = this.devices.get(key);
    if (d === undefined) {
      d = {
        key,
        prefix,
        name,
        online: undefined,
        channels: new Map(),
        recent: [],
        firstReading: 0,
        agent: undefined,
        port: undefined,
        framingErrors: undefined,
        updated: now,
      };
      this.devices.set(key, d);
    }
    return d;
  }

  private deviceMessage(prefix: string, rest: string, payload: Uint8Array, now: number): boolean {
    const slash = rest.indexOf('/');
    if (slash <= 0) return false;
    const name = rest.slice(0, slash);
    const leaf = rest.slice(slash + 1);
    if (leaf === 'status') {
      const text = payloadText(payload);
      const d = this.device(prefix, name, now);
      d.online = text === 'online' ? true : text === 'offline' ? false : undefined;
      d.updated = now;
      return true;
    }
    if (leaf.includes('/')) return false; // commands and their replies
    let r: unknown;
    try {
      r = JSON.parse(payloadText(payload));
    } catch {
      return false;
    }
    if (!isRecord(r) || !('value' in r)) return false;
    const device = typeof r.device === 'string' ? r.device : name;
    const sensor = typeof r.sensor === 'string' ? r.sensor : leaf;
    const value = r.value;
    if (typeof value !== 'number' && typeof value !== 'string' && typeof value !== 'boolean') return false;
    const d = this.device(prefix, device, now);
    let c = d.channels.get(sensor);
    if (c === undefined) {
      c = { sensor, unit: undefined, value: undefined, at: 0, series: new Series() };
      d.channels.set(sensor, c);
    }
    c.unit = typeof r.unit === 'string' ? r.unit : c.unit;
    c.value = value;
    c.at = now;
    if (typeof value === 'number' && Number.isFinite(value)) c.series.push(now, value);
    d.recent.push(now);
    if (d.firstReading === 0) d.firstReading = now;
    while (d.recent.length > 0 && d.recent[0] < now - RATE_WINDOW_MS) d.recent.shift();
    d.updated = now;
    this.readings++;
    return true;
  }

  /**
   * Readings per second of `d` over the last RATE_WINDOW_MS (over what the page has seen when
   * that is shorter; undefined for the first 2 s).
   */
  readingRate(d: Device, now: number): number | undefined {
    const window = Math.min(RATE_WINDOW_MS, now - d.firstReading);
    if (d.firstReading === 0 || window < 2000) return undefined;
    let n = 0;
    for (const t of d.recent) if (t > now - window && t <= now) n++;
    return n / (window / 1000);
  }
}

/** SenML units as people write them; anything else is shown as given. */
const UNIT_TEXT: Record<string, string> = { Cel: '°C', '%RH': '% RH', degrees: '°', Pa: 'Pa', '/': '' };

export function unitText(unit: string | undefined): string {
  if (unit === undefined) return '';
  return UNIT_TEXT[unit] ?? unit;
}
