/**
 * Home Assistant MQTT discovery payloads (issue 14.1): what a device's HELLO becomes in Home
 * Assistant. Pure functions, no I/O; `discovery.ts` decides when they are published or cleared.
 *
 * One retained config per entity on `<discovery_prefix>/<component>/<node_id>/<object_id>/config`
 * ("single component discovery"), not the device-based payload of HA 2024.11: it works with
 * every Home Assistant in use and with the other controllers that read HA discovery, and an
 * entity is removed with one empty retained payload (device-based discovery removes a component
 * in two steps). The packages/agent README says more.
 *
 * Each device that said HELLO is a device entry (via the gateway, which is one too) with one
 * `sensor` per sensor and a `button`, `switch`, `number` or `select` per command it describes.
 * Every device entity is available only while both its status topic and the agent's (the last
 * will) say `online` (`availability_mode: all`).
 */
import type { CommandInfo, SensorInfo } from '@mqtt-edge/serial-protocol';
import pkg from '../package.json' with { type: 'json' };
import type { PayloadFormat } from './config.ts';

export const AGENT_VERSION: string = pkg.version;

/** What the payloads are built from: the agent's topics and the discovery settings. */
export interface DiscoveryContext {
  /** `topics.prefix`: statuses and commands live under it. */
  prefix: string;
  agentId: string;
  discoveryPrefix: string;
  nodeId: string;
  payload: PayloadFormat;
  /** The reading topic of a device's sensor (the mapper's template). */
  readingTopic(device: string, sensor: string): string;
  /** The agent publishes its health topic (its queue sensors then have a state). */
  health: boolean;
}

/** A device as its HELLO describes it. */
export interface DeviceDescription {
  id: string;
  firmware?: string;
  model?: string;
  sensors: SensorInfo[];
  commands?: CommandInfo[];
}

export type Component = 'sensor' | 'binary_sensor' | 'button' | 'switch' | 'number' | 'select';

export interface DiscoveryConfig {
  component: Component;
  topic: string;
  payload: Record<string, unknown>;
}

/** How a SenML unit (RFC 8428 and its registry) shows in Home Assistant. */
export interface UnitMapping {
  device_class?: string;
  /** The unit as Home Assistant spells it; absent for classes without a unit (ph) or no unit. */
  unit_of_measurement?: string;
  state_class: 'measurement' | 'total_increasing';
}

type Mapped = [deviceClass: string, haUnit: string | undefined, total?: true];

/**
 * Units with exactly one Home Assistant sensor device class that takes them. Anything else
 * (`%`, `ppm`, `dB`, `ug/m3`, volumes: more than one class would do) is passed through as it is,
 * without a device class: Home Assistant still graphs it, nothing is guessed. Energy counters
 * (`Wh`, `kWh`) are `total_increasing`: a meter that restarts from 0 starts a new cycle.
 */
const UNITS: Record<string, Mapped> = {
  Cel: ['temperature', '°C'],
  '°C': ['temperature', '°C'],
  '°F': ['temperature', '°F'],
  K: ['temperature', 'K'],
  '%RH': ['humidity', '%'],
  '%EL': ['battery', '%'],
  Pa: ['pressure', 'Pa'],
  hPa: ['pressure', 'hPa'],
  kPa: ['pressure', 'kPa'],
  V: ['voltage', 'V'],
  mV: ['voltage', 'mV'],
  kV: ['voltage', 'kV'],
  A: ['current', 'A'],
  mA: ['current', 'mA'],
  W: ['power', 'W'],
  mW: ['power', 'mW'],
  kW: ['power', 'kW'],
  VA: ['apparent_power', 'VA'],
  var: ['reactive_power', 'var'],
  Wh: ['energy', 'Wh', true],
  kWh: ['energy', 'kWh', true],
  Hz: ['frequency', 'Hz'],
  kHz: ['frequency', 'kHz'],
  MHz: ['frequency', 'MHz'],
  lx: ['illuminance', 'lx'],
  'W/m2': ['irradiance', 'W/m²'],
  dBm: ['signal_strength', 'dBm'],
  m: ['distance', 'm'],
  cm: ['distance', 'cm'],
  mm: ['distance', 'mm'],
  km: ['distance', 'km'],
  m2: ['area', 'm²'],
  kg: ['weight', 'kg'],
  g: ['weight', 'g'],
  s: ['duration', 's'],
  ms: ['duration', 'ms'],
  min: ['duration', 'min'],
  h: ['duration', 'h'],
  'm/s': ['speed', 'm/s'],
  'km/h': ['speed', 'km/h'],
  B: ['data_size', 'B'],
  'bit/s': ['data_rate', 'bit/s'],
  'B/s': ['data_rate', 'B/s'],
  pH: ['ph', undefined],
};

export function unitMapping(unit: string | undefined): UnitMapping {
  const m = unit === undefined ? undefined : Object.hasOwn(UNITS, unit) ? UNITS[unit] : undefined;
  if (m === undefined)
    return unit === undefined
      ? { state_class: 'measurement' }
      : { unit_of_measurement: unit, state_class: 'measurement' };
  const out: UnitMapping = { device_class: m[0], state_class: m[2] ? 'total_increasing' : 'measurement' };
  if (m[1] !== undefined) out.unit_of_measurement = m[1];
  return out;
}

/** The SenML units mapped to a device class, for the docs and the tests. */
export function mappedUnits(): Array<[senml: string, deviceClass: string, haUnit: string | undefined]> {
  return Object.entries(UNITS).map(([u, m]) => [u, m[0], m[1]]);
}

/**
 * A name as a discovery topic level (`[A-Za-z0-9_-]` only): letters, digits and `-` stay, any
 * other character becomes `_` and two hex digits (`gw.1` -> `gw_2e1`). `_` is escaped too, so
 * `__` never occurs in an escaped name and `device__sensor` is unambiguous.
 */
export function topicId(name: string): string {
  return name.replace(/[^A-Za-z0-9-]/g, (c) => `_${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

function gatewayIdentifier(ctx: DiscoveryContext): string {
  return `mqtt-edge:${ctx.nodeId}`;
}

function origin(): Record<string, string> {
  return { name: 'mqtt-edge-agent', sw_version: AGENT_VERSION };
}

function configTopic(ctx: DiscoveryContext, component: Component, objectId: string): string {
  return `${ctx.discoveryPrefix}/${component}/${ctx.nodeId}/${objectId}/config`;
}

function agentStatusTopic(ctx: DiscoveryContext): string {
  return `${ctx.prefix}/_agent/${ctx.agentId}/status`;
}

/** The gateway (the agent itself): its connectivity and, with the health topic on, its queue. */
export function gatewayConfigs(ctx: DiscoveryContext): DiscoveryConfig[] {
  const device = {
    identifiers: [gatewayIdentifier(ctx)],
    name: `mqtt-edge gateway ${ctx.agentId}`,
    manufacturer: 'mqtt-edge',
    model: 'mqtt-edge-agent',
    sw_version: AGENT_VERSION,
  };
  const unique = (what: string) => `${gatewayIdentifier(ctx)}:gateway:${what}`;
  const out: DiscoveryConfig[] = [
    {
      component: 'binary_sensor',
      topic: configTopic(ctx, 'binary_sensor', 'gateway'),
      payload: {
        name: 'Broker connection',
        unique_id: unique('connectivity'),
        state_topic: agentStatusTopic(ctx),
        payload_on: 'online',
        payload_off: 'offline',
        device_class: 'connectivity',
        entity_category: 'diagnostic',
        device,
        origin: origin(),
      },
    },
  ];
  if (!ctx.health) return out;
  const health = `${ctx.prefix}/_agent/${ctx.agentId}/health`;
  const queueSensor = (id: string, name: string, template: string, extra: Record<string, unknown>) => ({
    component: 'sensor' as const,
    topic: configTopic(ctx, 'sensor', `gateway-${id}`),
    payload: {
      name,
      unique_id: unique(id),
      state_topic: health,
      value_template: template,
      ...extra,
      state_class: 'measurement',
      entity_category: 'diagnostic',
      availability: [{ topic: agentStatusTopic(ctx) }],
      device,
      origin: origin(),
    },
  });
  out.push(
    queueSensor('queue', 'Queued readings', '{{ value_json.queue.count }}', {}),
    queueSensor('queue-bytes', 'Queue size', '{{ value_json.queue.bytes }}', {
      device_class: 'data_size',
      unit_of_measurement: 'B',
    }),
    queueSensor(
      'queue-age',
      'Oldest queued reading',
      '{{ (value_json.queue.oldestAgeMs / 1000) | round(1) }}',
      {
        device_class: 'duration',
        unit_of_measurement: 's',
      },
    ),
  );
  return out;
}

/** A device's entities: one sensor per sensor, one entity per described command. */
export function deviceConfigs(ctx: DiscoveryContext, d: DeviceDescription): DiscoveryConfig[] {
  const ident = `${gatewayIdentifier(ctx)}:${d.id}`;
  const device: Record<string, unknown> = { identifiers: [ident], name: d.id };
  if (d.model !== undefined) device.model = d.model;
  if (d.firmware !== undefined) device.sw_version = d.firmware;
  device.via_device = gatewayIdentifier(ctx);
  const availability = [{ topic: `${ctx.prefix}/${d.id}/status` }, { topic: agentStatusTopic(ctx) }];
  const common = { availability, availability_mode: 'all', device, origin: origin() };
  const out: DiscoveryConfig[] = [];
  const seen = new Set<string>();
  for (const s of d.sensors) {
    if (seen.has(s.name)) continue; // a HELLO naming a sensor twice: the first one counts
    seen.add(s.name);
    const payload: Record<string, unknown> = {
      name: s.name,
      unique_id: `${ident}:sensor:${s.name}`,
      state_topic: ctx.readingTopic(d.id, s.name),
    };
    // json: the reading's `value`; raw: the payload is the value itself.
    if (ctx.payload === 'json') payload.value_template = '{{ value_json.value }}';
    Object.assign(payload, unitMapping(s.unit), common);
    const objectId = `${topicId(d.id)}__${topicId(s.name)}`;
    out.push({ component: 'sensor', topic: configTopic(ctx, 'sensor', objectId), payload });
  }
  for (const c of d.commands ?? []) {
    const command_topic = `${ctx.prefix}/${d.id}/cmd/${c.name}`;
    const payload: Record<string, unknown> = {
      name: c.name,
      unique_id: `${ident}:cmd:${c.name}`,
      command_topic,
      ...commandOptions(c, `${command_topic}/result`),
      qos: 1,
      retain: false,
      ...common,
    };
    const objectId = `${topicId(d.id)}__${topicId(c.name)}`;
    out.push({ component: c.kind, topic: configTopic(ctx, c.kind, objectId), payload });
  }
  return out;
}

/** The value a RESULT reports, or '' (Home Assistant ignores an empty state) for a failed command. */
const RESULT_VALUE = "{{ value_json.value if value_json.ok else '' }}";

/**
 * Command payloads are the command's JSON arguments (what the agent's command router takes):
 * a button sends none, the others their value, bare or as `{"arg": value}`. The state of a
 * switch, number or select is what the device answers on the command's result topic.
 */
function commandOptions(c: CommandInfo, resultTopic: string): Record<string, unknown> {
  if (c.kind === 'button') return { payload_press: '' };
  const wrap = (v: string) => (c.arg === undefined ? v : `{${JSON.stringify(c.arg)}: ${v}}`);
  switch (c.kind) {
    case 'switch':
      return {
        payload_on: wrap('true'),
        payload_off: wrap('false'),
        state_topic: resultTopic,
        value_template: "{% if value_json.ok %}{{ 'ON' if value_json.value else 'OFF' }}{% endif %}",
        state_on: 'ON',
        state_off: 'OFF',
      };
    case 'number': {
      const o: Record<string, unknown> = { min: c.min, max: c.max };
      // Home Assistant's smallest step is 0.001; without one it steps by 1.
      if (c.step !== undefined && c.step >= 0.001) o.step = c.step;
      if (c.unit !== undefined) {
        const u = unitMapping(c.unit).unit_of_measurement;
        if (u !== undefined) o.unit_of_measurement = u;
      }
      if (c.arg !== undefined) o.command_template = wrap('{{ value }}');
      return { ...o, state_topic: resultTopic, value_template: RESULT_VALUE };
    }
    case 'select':
      // Options are names (no quotes or backslashes), so this is a JSON string.
      return {
        options: c.options,
        command_template: wrap('"{{ value }}"'),
        state_topic: resultTopic,
        value_template: RESULT_VALUE,
      };
  }
}
