/**
 * Issue 14.1: the Home Assistant discovery payloads, checked against what Home Assistant
 * documents. The key lists below are copied (as data) from the configuration tables of the
 * Home Assistant docs, one per component; a payload key not in its component's list, a missing
 * required key, or a device class with a unit that class does not take fails the test.
 */
import { Firmware, Rng, SIM_COMMANDS } from '@mqtt-edge/firmware-sim';
import { type CmdFrame, encodeFrame, FrameDecoder, isValue, type Value } from '@mqtt-edge/serial-protocol';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type Component,
  type DeviceDescription,
  type DiscoveryConfig,
  type DiscoveryContext,
  deviceConfigs,
  gatewayConfigs,
  mappedUnits,
  topicId,
  unitMapping,
} from '../src/homeassistant.ts';
import { Mapper } from '../src/mapper.ts';

// https://www.home-assistant.io/integrations/mqtt/ (discovery payload: origin, base topic `~`)
const DISCOVERY_KEYS = ['origin', '~'];
// https://www.home-assistant.io/integrations/mqtt/#adding-information-about-the-origin-of-a-discovery-message
const ORIGIN_KEYS = ['name', 'sw_version', 'support_url'];
// The `device` map, the same in every component's table.
const DEVICE_KEYS = [
  'configuration_url',
  'connections',
  'hw_version',
  'identifiers',
  'manufacturer',
  'model',
  'model_id',
  'name',
  'serial_number',
  'suggested_area',
  'sw_version',
  'via_device',
];
// Each `availability` entry.
const AVAILABILITY_KEYS = ['payload_available', 'payload_not_available', 'topic', 'value_template'];
// Keys every MQTT entity platform documents.
const ENTITY_KEYS = [
  'availability',
  'availability_mode',
  'availability_template',
  'availability_topic',
  'device',
  'enabled_by_default',
  'encoding',
  'entity_category',
  'entity_picture',
  'icon',
  'json_attributes_template',
  'json_attributes_topic',
  'name',
  'object_id',
  'platform',
  'qos',
  'unique_id',
];

const DOCS: Record<Component, { url: string; keys: string[]; required: string[] }> = {
  sensor: {
    url: 'https://www.home-assistant.io/integrations/sensor.mqtt/',
    keys: [
      'device_class',
      'expire_after',
      'force_update',
      'last_reset_value_template',
      'options',
      'payload_available',
      'payload_not_available',
      'suggested_display_precision',
      'state_class',
      'state_topic',
      'unit_of_measurement',
      'value_template',
    ],
    required: ['state_topic'],
  },
  binary_sensor: {
    url: 'https://www.home-assistant.io/integrations/binary_sensor.mqtt/',
    keys: [
      'device_class',
      'expire_after',
      'force_update',
      'off_delay',
      'payload_available',
      'payload_not_available',
      'payload_off',
      'payload_on',
      'state_topic',
      'value_template',
    ],
    required: ['state_topic'],
  },
  button: {
    url: 'https://www.home-assistant.io/integrations/button.mqtt/',
    keys: [
      'command_template',
      'command_topic',
      'device_class',
      'payload_available',
      'payload_not_available',
      'payload_press',
      'retain',
    ],
    required: ['command_topic'],
  },
  switch: {
    url: 'https://www.home-assistant.io/integrations/switch.mqtt/',
    keys: [
      'command_template',
      'command_topic',
      'device_class',
      'optimistic',
      'payload_available',
      'payload_not_available',
      'payload_off',
      'payload_on',
      'retain',
      'state_off',
      'state_on',
      'state_topic',
      'value_template',
    ],
    required: ['command_topic'],
  },
  number: {
    url: 'https://www.home-assistant.io/integrations/number.mqtt/',
    keys: [
      'command_template',
      'command_topic',
      'device_class',
      'max',
      'min',
      'mode',
      'optimistic',
      'payload_reset',
      'retain',
      'state_topic',
      'step',
      'unit_of_measurement',
      'value_template',
    ],
    required: ['command_topic'],
  },
  select: {
    url: 'https://www.home-assistant.io/integrations/select.mqtt/',
    keys: [
      'command_template',
      'command_topic',
      'optimistic',
      'options',
      'retain',
      'state_topic',
      'value_template',
    ],
    required: ['command_topic', 'options'],
  },
};

// https://www.home-assistant.io/integrations/sensor/#device-class: each class and its units
// (`null`: the class takes no unit).
const SENSOR_CLASS_UNITS: Record<string, Array<string | null>> = {
  apparent_power: ['VA'],
  area: ['m²', 'cm²', 'km²', 'mm²', 'in²', 'ft²', 'yd²', 'mi²', 'ac', 'ha'],
  atmospheric_pressure: ['cbar', 'bar', 'hPa', 'mmHg', 'inHg', 'kPa', 'mbar', 'Pa', 'psi'],
  battery: ['%'],
  current: ['A', 'mA'],
  data_rate: [
    'bit/s',
    'kbit/s',
    'Mbit/s',
    'Gbit/s',
    'B/s',
    'kB/s',
    'MB/s',
    'GB/s',
    'KiB/s',
    'MiB/s',
    'GiB/s',
  ],
  data_size: ['bit', 'kbit', 'Mbit', 'Gbit', 'B', 'kB', 'MB', 'GB', 'TB', 'KiB', 'MiB', 'GiB', 'TiB'],
  distance: ['km', 'm', 'cm', 'mm', 'mi', 'nmi', 'yd', 'in'],
  duration: ['d', 'h', 'min', 's', 'ms'],
  energy: ['J', 'kJ', 'MJ', 'GJ', 'mWh', 'Wh', 'kWh', 'MWh', 'GWh', 'TWh', 'cal', 'kcal', 'Mcal', 'Gcal'],
  frequency: ['Hz', 'kHz', 'MHz', 'GHz'],
  humidity: ['%'],
  illuminance: ['lx'],
  irradiance: ['W/m²', 'BTU/(h⋅ft²)'],
  ph: [null],
  power: ['mW', 'W', 'kW', 'MW', 'GW', 'TW'],
  pressure: ['Pa', 'kPa', 'hPa', 'bar', 'cbar', 'mbar', 'mmHg', 'inHg', 'psi'],
  reactive_power: ['var'],
  signal_strength: ['dB', 'dBm'],
  speed: ['ft/s', 'in/d', 'in/h', 'in/s', 'km/h', 'kn', 'm/s', 'mph', 'mm/d', 'mm/s'],
  temperature: ['°C', '°F', 'K'],
  voltage: ['V', 'mV', 'µV', 'kV', 'MV'],
  weight: ['kg', 'g', 'mg', 'µg', 'oz', 'lb', 'st'],
};
// https://developers.home-assistant.io/docs/core/entity/sensor#available-state-classes; energy
// takes total or total_increasing only.
const STATE_CLASSES = ['measurement', 'total', 'total_increasing'];

function ctx(over: Partial<DiscoveryContext> = {}): DiscoveryContext {
  const mapper = new Mapper({
    prefix: 'sensors',
    template: '{prefix}/{device}/{sensor}',
    payload: 'json',
    qos: 1,
    protocolVersion: 5,
  });
  return {
    prefix: 'sensors',
    agentId: 'gw-1',
    discoveryPrefix: 'homeassistant',
    nodeId: 'gw-1',
    payload: 'json',
    readingTopic: (d, s) => mapper.topic(d, s),
    health: true,
    ...over,
  };
}

const DEVICE: DeviceDescription = {
  id: 'kitchen',
  firmware: 'sim-1.0.0',
  model: 'firmware-sim',
  sensors: [
    { name: 'temp', unit: 'Cel' },
    { name: 'hum', unit: '%RH' },
    { name: 'pressure', unit: 'hPa' },
    { name: 'energy', unit: 'Wh' },
    { name: 'co2', unit: 'ppm' },
    { name: 'counter' },
  ],
  commands: SIM_COMMANDS,
};

/** Every problem a discovery config has against the documented keys. */
function checkAgainstDocs(c: DiscoveryConfig): string[] {
  const doc = DOCS[c.component];
  const allowed = new Set([...ENTITY_KEYS, ...DISCOVERY_KEYS, ...doc.keys]);
  const out: string[] = [];
  for (const k of Object.keys(c.payload)) if (!allowed.has(k)) out.push(`${c.topic}: ${k} not in ${doc.url}`);
  for (const k of doc.required) if (c.payload[k] === undefined) out.push(`${c.topic}: required ${k} missing`);
  // platform is only for device-based discovery payloads.
  if ('platform' in c.payload) out.push(`${c.topic}: platform belongs to device-based discovery`);
  const dev = c.payload.device as Record<string, unknown>;
  for (const k of Object.keys(dev))
    if (!DEVICE_KEYS.includes(k)) out.push(`${c.topic}: device.${k} undocumented`);
  if (!Array.isArray(dev.identifiers) || dev.identifiers.length === 0)
    out.push(`${c.topic}: no device identifiers`);
  if (typeof c.payload.unique_id !== 'string') out.push(`${c.topic}: a device entity needs unique_id`);
  for (const k of Object.keys(c.payload.origin as object))
    if (!ORIGIN_KEYS.includes(k)) out.push(`${c.topic}: origin.${k} undocumented`);
  for (const a of (c.payload.availability as object[] | undefined) ?? [])
    for (const k of Object.keys(a))
      if (!AVAILABILITY_KEYS.includes(k)) out.push(`${c.topic}: availability ${k}`);
  if (c.component === 'sensor') {
    const dc = c.payload.device_class as string | undefined;
    const unit = (c.payload.unit_of_measurement as string | undefined) ?? null;
    if (dc !== undefined) {
      if (!(dc in SENSOR_CLASS_UNITS)) out.push(`${c.topic}: device_class ${dc} undocumented`);
      else if (!SENSOR_CLASS_UNITS[dc].includes(unit)) out.push(`${c.topic}: ${dc} does not take ${unit}`);
    }
    const sc = c.payload.state_class as string | undefined;
    if (sc !== undefined && !STATE_CLASSES.includes(sc)) out.push(`${c.topic}: state_class ${sc}`);
    if (dc === 'energy' && sc === 'measurement') out.push(`${c.topic}: energy cannot be measurement`);
  }
  // The topic's node and object ids: HA's character class.
  const levels = c.topic.split('/');
  if (
    !/^[a-zA-Z0-9_-]+$/.test(levels[levels.length - 2]) ||
    !/^[a-zA-Z0-9_-]+$/.test(levels[levels.length - 3])
  )
    out.push(`${c.topic}: node or object id outside [a-zA-Z0-9_-]`);
  if (levels[levels.length - 1] !== 'config' || levels[levels.length - 4] !== c.component)
    out.push(`${c.topic}: not <prefix>/<component>/<node_id>/<object_id>/config`);
  return out;
}

describe('issue 14.1: Home Assistant discovery payloads', () => {
  it('issue 14.1: every payload uses only the keys Home Assistant documents for its component', () => {
    const all = [...gatewayConfigs(ctx()), ...deviceConfigs(ctx(), DEVICE)];
    expect(new Set(all.map((c) => c.component))).toEqual(
      new Set(['sensor', 'binary_sensor', 'button', 'switch', 'number', 'select']),
    );
    expect(all.flatMap(checkAgainstDocs)).toEqual([]);
    // One topic and one unique id per entity.
    expect(new Set(all.map((c) => c.topic)).size).toBe(all.length);
    expect(new Set(all.map((c) => c.payload.unique_id)).size).toBe(all.length);
  });

  it('issue 14.1: a device entry with model and firmware, via the gateway, which has a device entry of its own', () => {
    const gw = gatewayConfigs(ctx());
    const dev = deviceConfigs(ctx(), DEVICE);
    const gwDevice = gw[0].payload.device as Record<string, unknown>;
    expect(gwDevice).toMatchObject({ identifiers: ['mqtt-edge:gw-1'], model: 'mqtt-edge-agent' });
    expect(dev[0].payload.device).toEqual({
      identifiers: ['mqtt-edge:gw-1:kitchen'],
      name: 'kitchen',
      model: 'firmware-sim',
      sw_version: 'sim-1.0.0',
      via_device: 'mqtt-edge:gw-1',
    });
    expect(gw[0].payload).toMatchObject({
      state_topic: 'sensors/_agent/gw-1/status',
      payload_on: 'online',
      payload_off: 'offline',
      device_class: 'connectivity',
    });
  });

  it('issue 14.1: availability is the device status topic and the agent will, both needed', () => {
    for (const c of deviceConfigs(ctx(), DEVICE))
      expect(c.payload).toMatchObject({
        availability: [{ topic: 'sensors/kitchen/status' }, { topic: 'sensors/_agent/gw-1/status' }],
        availability_mode: 'all',
      });
  });

  it('issue 14.1: SenML units map to device class, unit and state class; unknown units pass through unclassified', () => {
    const byName = new Map(deviceConfigs(ctx(), DEVICE).map((c) => [c.payload.name, c.payload]));
    expect(byName.get('temp')).toMatchObject({
      device_class: 'temperature',
      unit_of_measurement: '°C',
      state_class: 'measurement',
    });
    expect(byName.get('hum')).toMatchObject({ device_class: 'humidity', unit_of_measurement: '%' });
    expect(byName.get('pressure')).toMatchObject({ device_class: 'pressure', unit_of_measurement: 'hPa' });
    expect(byName.get('energy')).toMatchObject({
      device_class: 'energy',
      unit_of_measurement: 'Wh',
      state_class: 'total_increasing',
    });
    // ppm: carbon dioxide, carbon monoxide or VOC parts? Not guessed.
    expect(byName.get('co2')).toEqual(expect.not.objectContaining({ device_class: expect.anything() }));
    expect(byName.get('co2')).toMatchObject({ unit_of_measurement: 'ppm', state_class: 'measurement' });
    expect(byName.get('counter')).toEqual(
      expect.not.objectContaining({
        device_class: expect.anything(),
        unit_of_measurement: expect.anything(),
      }),
    );
    for (const u of ['%', 'dB', 'ug/m3', 'l', 'm3', 'count', 'furlongs'])
      expect(unitMapping(u)).toEqual({ unit_of_measurement: u, state_class: 'measurement' });
    expect(unitMapping('pH')).toEqual({ device_class: 'ph', state_class: 'measurement' });
    expect(unitMapping('__proto__')).toEqual({
      unit_of_measurement: '__proto__',
      state_class: 'measurement',
    });
    // Every mapping is one Home Assistant documents.
    for (const [senml, dc, unit] of mappedUnits()) {
      expect(SENSOR_CLASS_UNITS[dc], `${senml} -> ${dc}`).toBeDefined();
      expect(SENSOR_CLASS_UNITS[dc], `${senml} -> ${dc} ${unit}`).toContain(unit ?? null);
    }
  });

  it('issue 14.1: the state topic and value template read what the mapper publishes (json and raw)', () => {
    for (const payload of ['json', 'raw'] as const) {
      const mapper = new Mapper({
        prefix: 'p',
        template: '{prefix}/r/{sensor}/of/{device}',
        payload,
        qos: 1,
        protocolVersion: 5,
      });
      const c = ctx({ prefix: 'p', payload, readingTopic: (d, s) => mapper.topic(d, s) });
      for (const s of DEVICE.sensors) {
        const reading = { sensor: s.name, value: 21.25, ...(s.unit ? { unit: s.unit } : {}) };
        const m = mapper.map({ device: 'kitchen', bootId: 1, seq: 2, index: 0, reading, receivedAt: 0 });
        const cfg = deviceConfigs(c, DEVICE).find((x) => x.payload.name === s.name)!;
        expect(cfg.payload.state_topic).toBe(m.topic);
        const text = Buffer.from(m.payload).toString('utf8');
        const template = cfg.payload.value_template as string | undefined;
        if (payload === 'raw') {
          expect(template).toBeUndefined();
          expect(Number(text)).toBe(21.25);
        } else {
          const key = /^\{\{ value_json\.(\w+) \}\}$/.exec(template ?? '')?.[1];
          expect(key).toBeDefined();
          expect(JSON.parse(text)[key!]).toBe(21.25);
        }
      }
    }
  });

  it('issue 14.1: what Home Assistant publishes for each command is arguments the firmware takes', () => {
    const configs = deviceConfigs(ctx(), DEVICE).filter((c) => c.component !== 'sensor');
    expect(configs.map((c) => [c.component, c.payload.name])).toEqual(
      SIM_COMMANDS.map((c) => [c.kind, c.name]),
    );
    const fw = new Firmware({ deviceId: 'kitchen', rng: new Rng(1) }, 0);
    fw.takeOutput();
    const decoder = new FrameDecoder();
    let id = 1;
    for (const c of configs) {
      const p = c.payload;
      expect(p.command_topic).toBe(`sensors/kitchen/cmd/${p.name}`);
      expect(p.retain).toBe(false);
      // The payloads HA would send: HA renders `{{ value }}` in command_template with the value.
      const render = (v: string) =>
        p.command_template === undefined ? v : (p.command_template as string).replace('{{ value }}', v);
      const sent: Array<[string, Value | undefined]> =
        c.component === 'button'
          ? [[p.payload_press as string, undefined]]
          : c.component === 'switch'
            ? [
                [p.payload_on as string, true],
                [p.payload_off as string, false],
              ]
            : c.component === 'number'
              ? [[render(String(p.max)), p.max as number]]
              : (p.options as string[]).map((o) => [render(o), o]);
      for (const [payload, expected] of sent) {
        // As the agent's command router reads a payload: empty, or JSON.
        const args = payload === '' ? undefined : (JSON.parse(payload) as Value);
        if (args !== undefined) expect(isValue(args)).toBe(true);
        const cmd: CmdFrame = { type: 'cmd', seq: 0, id: id++, name: p.name as string };
        if (args !== undefined) cmd.args = args;
        fw.receive(encodeFrame(cmd), 1);
        const result = fw
          .takeOutput()
          .flatMap((b) => decoder.push(b))
          .find((f) => f.type === 'result');
        expect(result, `${p.name} ${payload}`).toMatchObject({ ok: true });
        if (expected !== undefined) expect(result).toMatchObject({ value: expected });
      }
      if (c.component !== 'button') {
        expect(p.state_topic).toBe(`sensors/kitchen/cmd/${p.name}/result`);
        expect(p.value_template).toMatch(/value_json\.ok/);
      }
    }
  });

  it('issue 14.1: object ids are HA-safe and never collide, whatever the names', () => {
    const name = fc.stringMatching(/^[A-Za-z0-9_.:-]{1,8}$/);
    fc.assert(
      fc.property(name, name, name, name, (d1, s1, d2, s2) => {
        const a = `${topicId(d1)}__${topicId(s1)}`;
        const b = `${topicId(d2)}__${topicId(s2)}`;
        expect(a).toMatch(/^[A-Za-z0-9_-]+$/);
        if (d1 !== d2 || s1 !== s2) expect(a).not.toBe(b);
      }),
      { numRuns: 2000 },
    );
    expect(topicId('gw.1')).toBe('gw_2e1');
    expect(topicId('a_b')).toBe('a_5fb');
  });

  it('issue 14.1: without the health topic the gateway has its connectivity only; a HELLO naming a sensor twice gives one entity', () => {
    expect(gatewayConfigs(ctx({ health: false })).map((c) => c.component)).toEqual(['binary_sensor']);
    const twice = deviceConfigs(ctx(), { id: 'd', sensors: [{ name: 't' }, { name: 't', unit: 'Cel' }] });
    expect(twice).toHaveLength(1);
    expect(twice[0].payload.device).toEqual({
      identifiers: ['mqtt-edge:gw-1:d'],
      name: 'd',
      via_device: 'mqtt-edge:gw-1',
    });
  });
});
