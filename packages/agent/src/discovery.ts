/**
 * When Home Assistant discovery configs are published and cleared (issue 14.1); what they say
 * is `homeassistant.ts`.
 *
 * - A device's configs go out when its HELLO arrives (again only what changed: a port reopen asks
 *   for a HELLO), all of them at every broker connection (a broker without persistence forgot
 *   them) and when Home Assistant's birth message arrives (its restart unloaded them).
 * - What is retained at the broker is remembered in `{stateDir}/homeassistant.json`, with the
 *   port each device was on. A device whose port is gone from the config (a reload, or a restart
 *   with a port removed) has its configs cleared: an empty retained payload on each topic, which
 *   removes the entity and the retained message. So do entities a new HELLO no longer lists, every
 *   topic of an old discovery prefix or node id, and all of them when discovery is turned off.
 *   A clear is forgotten only once the broker acknowledged it: one that did not get through is
 *   sent again at the next connection, after a restart too.
 * - Nothing is published while the broker is away: the next connection announces everything.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  type DeviceDescription,
  type DiscoveryConfig,
  type DiscoveryContext,
  deviceConfigs,
  gatewayConfigs,
} from './homeassistant.ts';
import type { Logger } from './log.ts';

export const DISCOVERY_STATE_FILE = 'homeassistant.json';
/**
 * Devices remembered per port: one that says HELLO with ever new ids (confused or hostile) must
 * not fill the broker with retained configs. Past it, the port's device announced longest ago is
 * cleared.
 */
const MAX_DEVICES_PER_PORT = 8;
/** Home Assistant asks for a random delay after its birth message, so gateways do not all answer at once. */
const BIRTH_JITTER_MS = 1000;

export interface DiscoveryHost {
  /** A QoS 1 retained publish; resolves true once the broker acknowledged it. */
  publish(topic: string, payload: string): Promise<boolean>;
  log: Logger;
}

export interface DiscoverySettings {
  enabled: boolean;
  ctx: DiscoveryContext;
}

/** What is (as far as the agent knows) retained at the broker, and what is still to clear. */
interface SavedState {
  version: 1;
  /** Device id -> the port it was last seen on and its config topics. */
  devices: Record<string, { port: string; topics: string[] }>;
  gateway: string[];
  /** Topics whose empty payload the broker has not acknowledged yet. */
  clear: string[];
}

export interface DiscoveryCounters {
  configsPublished: number;
  configsCleared: number;
  births: number;
}

export class HomeAssistantDiscovery {
  readonly counters: DiscoveryCounters = { configsPublished: 0, configsCleared: 0, births: 0 };
  private settings: DiscoverySettings;
  /** Devices that said HELLO in this run, with the port they said it on. */
  private readonly known = new Map<string, { port: string; description: DeviceDescription }>();
  private state: SavedState;
  /** Topic -> payload sent on the current connection: a repeated HELLO sends only what changed. */
  private readonly sent = new Map<string, string>();
  private readonly clearing = new Set<string>();
  private connected = false;
  private birthTimer: NodeJS.Timeout | undefined;
  private saveFailing = false;
  private readonly file: string;
  /** Devices kept per port where more than MAX_DEVICES_PER_PORT may be there (a Modbus line, issue 20). */
  private readonly capacity = new Map<string, number>();

  constructor(
    stateDir: string,
    settings: DiscoverySettings,
    ports: readonly string[],
    private readonly host: DiscoveryHost,
  ) {
    this.file = path.join(stateDir, DISCOVERY_STATE_FILE);
    this.settings = settings;
    this.state = this.load();
    // A restart with ports removed from the config: the devices seen on them are gone for good.
    this.forgetPortsExcept(new Set(ports));
    if (!settings.enabled) this.clearAll();
    this.save();
  }

  get enabled(): boolean {
    return this.settings.enabled;
  }

  /** A port may hold up to `devices` devices (a Modbus line lists them): none is evicted below it. */
  setPortCapacity(port: string, devices: number): void {
    this.capacity.set(port, Math.max(MAX_DEVICES_PER_PORT, devices));
  }

  /** Home Assistant's birth topic (`<discovery_prefix>/status`). */
  get birthTopic(): string {
    return `${this.settings.ctx.discoveryPrefix}/status`;
  }

  /** Config topics retained for a device (for the status file and tests). */
  topicsOf(device: string): string[] {
    return this.state.devices[device]?.topics ?? [];
  }

  /** The broker connection is up: everything is announced again, pending clears sent. */
  onConnect(): void {
    this.connected = true;
    this.sent.clear();
    this.announceAll();
  }

  onDisconnect(): void {
    this.connected = false;
    this.clearing.clear();
    clearTimeout(this.birthTimer);
  }

  /** A device's HELLO on a port. */
  onHello(port: string, description: DeviceDescription): void {
    const id = description.id;
    // Most recently announced last, in both maps: the oldest on a port goes first.
    this.known.delete(id);
    this.known.set(id, { port, description });
    const saved = this.state.devices[id];
    if (saved !== undefined) {
      delete this.state.devices[id];
      this.state.devices[id] = saved;
    }
    const keep = this.capacity.get(port) ?? MAX_DEVICES_PER_PORT;
    const excess = (ids: string[]) => ids.slice(0, Math.max(0, ids.length - (keep - 1)));
    for (const old of excess([...this.known].filter(([k, v]) => v.port === port && k !== id).map(([k]) => k)))
      this.known.delete(old);
    const savedOnPort = Object.keys(this.state.devices).filter(
      (d) => this.state.devices[d].port === port && d !== id,
    );
    const evicted = excess(savedOnPort);
    for (const old of evicted) this.clearDevice(old);
    if (evicted.length > 0) this.save();
    if (!this.settings.enabled) return;
    this.announce(description.id, port, deviceConfigs(this.settings.ctx, description));
    this.flushClears();
  }

  /** Home Assistant said `online` on its birth topic: it forgot what it had, announce it all again. */
  onBirth(): void {
    if (!this.settings.enabled) return;
    this.counters.births++;
    clearTimeout(this.birthTimer);
    this.birthTimer = setTimeout(
      () => {
        this.sent.clear();
        this.announceAll();
      },
      Math.floor(Math.random() * BIRTH_JITTER_MS),
    );
    this.birthTimer.unref();
  }

  /** Ports taken away by a reload: their devices' configs are cleared. */
  onPortsRemoved(ports: readonly string[]): void {
    const gone = new Set(ports);
    for (const [id, k] of this.known) if (gone.has(k.port)) this.known.delete(id);
    for (const [id, d] of Object.entries(this.state.devices)) if (gone.has(d.port)) this.clearDevice(id);
    this.save();
    this.flushClears();
  }

  /**
   * New settings from a reload (topics, prefix, health, discovery prefix, node id, on/off).
   * Topics that the new settings do not use are cleared; the rest is announced again.
   */
  reconfigure(settings: DiscoverySettings): void {
    const before = this.settings;
    this.settings = settings;
    const moved =
      before.ctx.discoveryPrefix !== settings.ctx.discoveryPrefix ||
      before.ctx.nodeId !== settings.ctx.nodeId;
    if (!settings.enabled || moved) this.clearAll();
    this.save();
    this.sent.clear();
    this.announceAll();
  }

  close(): void {
    clearTimeout(this.birthTimer);
  }

  private announceAll(): void {
    if (this.settings.enabled) {
      this.announce(undefined, undefined, gatewayConfigs(this.settings.ctx));
      for (const [id, k] of this.known)
        this.announce(id, k.port, deviceConfigs(this.settings.ctx, k.description));
    }
    this.flushClears();
  }

  /** Publishes what changed; topics the device (or the gateway) had and no longer has are cleared. */
  private announce(device: string | undefined, port: string | undefined, configs: DiscoveryConfig[]): void {
    const topics = configs.map((c) => c.topic);
    const before = device === undefined ? this.state.gateway : (this.state.devices[device]?.topics ?? []);
    const keep = new Set(topics);
    const dropped = before.filter((t) => !keep.has(t));
    let changed = dropped.length > 0 || before.length !== topics.length;
    if (device === undefined) this.state.gateway = topics;
    else {
      changed ||= this.state.devices[device]?.port !== port;
      this.state.devices[device] = { port: port as string, topics };
    }
    // A topic announced again is no longer to be cleared (its clear, if sent, went out first).
    const clear = new Set(this.state.clear);
    for (const t of topics) if (clear.delete(t)) changed = true;
    for (const t of dropped) clear.add(t);
    this.state.clear = [...clear];
    if (changed) this.save();
    if (!this.connected) return;
    for (const c of configs) {
      const json = JSON.stringify(c.payload);
      if (this.sent.get(c.topic) === json) continue;
      this.sent.set(c.topic, json);
      this.counters.configsPublished++;
      void this.host.publish(c.topic, json).then((ok) => {
        if (!ok && this.sent.get(c.topic) === json) this.sent.delete(c.topic);
      });
    }
  }

  private clearDevice(id: string): void {
    const d = this.state.devices[id];
    if (d === undefined) return;
    delete this.state.devices[id];
    this.state.clear = [...new Set([...this.state.clear, ...d.topics])];
    for (const t of d.topics) this.sent.delete(t);
  }

  private clearAll(): void {
    for (const id of Object.keys(this.state.devices)) this.clearDevice(id);
    this.state.clear = [...new Set([...this.state.clear, ...this.state.gateway])];
    for (const t of this.state.gateway) this.sent.delete(t);
    this.state.gateway = [];
  }

  private forgetPortsExcept(ports: Set<string>): void {
    for (const [id, d] of Object.entries(this.state.devices)) if (!ports.has(d.port)) this.clearDevice(id);
  }

  /** Sends an empty retained payload for each topic still to clear; forgets it once acknowledged. */
  private flushClears(): void {
    if (!this.connected) return;
    for (const topic of this.state.clear) {
      if (this.clearing.has(topic)) continue;
      this.clearing.add(topic);
      void this.host.publish(topic, '').then((ok) => {
        this.clearing.delete(topic);
        if (!ok || !this.state.clear.includes(topic)) return;
        this.counters.configsCleared++;
        this.state.clear = this.state.clear.filter((t) => t !== topic);
        this.save();
      });
    }
  }

  private load(): SavedState {
    const empty: SavedState = { version: 1, devices: {}, gateway: [], clear: [] };
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch {
      return empty;
    }
    try {
      const s = JSON.parse(text) as Partial<SavedState>;
      const strings = (x: unknown): string[] =>
        Array.isArray(x) ? x.filter((t): t is string => typeof t === 'string') : [];
      const devices: SavedState['devices'] = {};
      if (typeof s.devices === 'object' && s.devices !== null)
        for (const [id, d] of Object.entries(s.devices))
          if (typeof d?.port === 'string') devices[id] = { port: d.port, topics: strings(d.topics) };
      return { version: 1, devices, gateway: strings(s.gateway), clear: strings(s.clear) };
    } catch (err) {
      // A torn or hand-edited file: the configs it named cannot be cleared; say so once.
      this.host.log.log('warn', 'discovery-state-unreadable', {
        file: this.file,
        error: (err as Error).message,
      });
      return empty;
    }
  }

  private save(): void {
    const tmp = `${this.file}.${process.pid}.tmp`;
    try {
      writeFileSync(tmp, `${JSON.stringify(this.state)}\n`);
      renameSync(tmp, this.file);
      if (this.saveFailing) this.host.log.log('info', 'discovery-state-written-again', { file: this.file });
      this.saveFailing = false;
    } catch (err) {
      if (!this.saveFailing)
        this.host.log.log('warn', 'discovery-state-failed', {
          file: this.file,
          error: (err as Error).message,
        });
      this.saveFailing = true;
    }
  }
}
