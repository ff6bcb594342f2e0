/** Issue 20.1: a `protocol: modbus-rtu` port's settings: defaults, errors with key paths, check's document. */
import { describe, expect, it } from 'vitest';
import { ConfigError, configDocument, parseConfig, parseConfigText } from '../src/config.ts';

const base = { mqtt: { url: 'mqtt://127.0.0.1:1883' } };

function problems(serial: unknown[]): string[] {
  try {
    parseConfig({ ...base, serial }, { env: {}, baseDir: '/etc/agent' });
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).problems.map((p) => `${p.path}: ${p.message}`);
  }
  return [];
}

const meter = {
  path: '/dev/ttyUSB0',
  protocol: 'modbus-rtu',
  devices: [
    {
      unit: 1,
      registers: [
        { name: 'voltage', table: 'input', address: 0, type: 'float32', unit: 'V' },
        { name: 'setpoint', table: 'holding', address: 10, scale: 0.1, unit: 'Cel', writable: true },
        { name: 'relay', table: 'coil', address: 0, writable: true, interval: '1s' },
      ],
    },
  ],
};

describe('issue 20.1: modbus-rtu ports', () => {
  it('issue 20.1: defaults: 9600 8E1 (the spec), 1 s response timeout, 1 retry, offline after 3 missed polls; device id from the port and unit; registers int16, big word order, scale 1, every 10 s', () => {
    const c = parseConfig({ ...base, serial: [meter] }, { env: {} });
    expect(c.serial[0]).toEqual({
      name: 'ttyUSB0',
      path: '/dev/ttyUSB0',
      baud: 9600,
      framing: 'native',
      writeTimeoutMs: 5000,
      dataBits: 8,
      parity: 'even',
      stopBits: 1,
      modbus: {
        responseTimeoutMs: 1000,
        retries: 1,
        offlineAfter: 3,
        devices: [
          {
            id: 'ttyUSB0-1',
            unit: 1,
            registers: [
              {
                name: 'voltage',
                table: 'input',
                address: 0,
                type: 'float32',
                wordOrder: 'big',
                scale: 1,
                offset: 0,
                unit: 'V',
                intervalMs: 10_000,
                writable: false,
              },
              {
                name: 'setpoint',
                table: 'holding',
                address: 10,
                type: 'int16',
                wordOrder: 'big',
                scale: 0.1,
                offset: 0,
                unit: 'Cel',
                intervalMs: 10_000,
                writable: true,
              },
              {
                name: 'relay',
                table: 'coil',
                address: 0,
                type: 'bool',
                wordOrder: 'big',
                scale: 1,
                offset: 0,
                intervalMs: 1000,
                writable: true,
              },
            ],
          },
        ],
      },
    });
  });

  it('issue 20.1: check prints the port as the file spells it, and it reads back the same', () => {
    const c = parseConfig(
      {
        ...base,
        serial: [
          { ...meter, name: 'rs485', baud: 19200, parity: 'none', stopBits: 2, frameGap: '5ms', retries: 0 },
        ],
      },
      { env: {} },
    );
    const doc = configDocument(c);
    expect((doc.serial as Array<Record<string, unknown>>)[0]).toMatchObject({
      name: 'rs485',
      protocol: 'modbus-rtu',
      baud: 19200,
      parity: 'none',
      stopBits: 2,
      frameGap: '5ms',
      retries: 0,
    });
    expect((doc.serial as Array<Record<string, unknown>>)[0].framing).toBeUndefined();
    expect(parseConfig(doc, { env: {} })).toEqual(c);
  });

  it('issue 20.1: mistakes are named with their key path and what to do', () => {
    const dev = (d: Record<string, unknown>) => [{ path: '/dev/x', protocol: 'modbus-rtu', devices: [d] }];
    const reg = (r: Record<string, unknown>) =>
      dev({ unit: 1, registers: [{ name: 'a', table: 'holding', address: 0, ...r }] });
    expect(problems(dev({ unit: 0, registers: [] }))).toEqual([
      'serial[0].devices[0].unit: must be an integer in 1..247; got 0',
    ]);
    expect(problems([{ path: '/dev/x', protocol: 'modbus-rtu' }])).toEqual([
      'serial[0].devices: list the devices on the line (unit, registers)',
    ]);
    expect(problems(reg({ tabel: 'input' }))).toEqual([
      'serial[0].devices[0].registers[0].tabel: unknown key; did you mean table?',
    ]);
    expect(problems(reg({ table: 'inputs' }))[0]).toMatch(
      /table: must be one of holding, input, coil, discrete/,
    );
    expect(problems(reg({ type: 'bool' }))[0]).toMatch(/type: a holding register holds int16/);
    expect(problems(reg({ table: 'coil', type: 'float32' }))[0]).toMatch(/type: a coil is one bit/);
    expect(problems(reg({ table: 'input', writable: true }))[0]).toMatch(
      /writable: an input register is read-only/,
    );
    expect(problems(reg({ address: 65535, type: 'uint32' }))[0]).toMatch(
      /address: uint32 at 65535 runs past/,
    );
    expect(problems(reg({ scale: 0 }))[0]).toMatch(/scale: must not be 0/);
    expect(problems(reg({ interval: '10ms' }))[0]).toMatch(/interval: must be between 100ms and 1d/);
    expect(problems(reg({ min: 0 }))[0]).toMatch(/min: bounds a writable number register only/);
    expect(
      problems([
        {
          path: '/dev/x',
          protocol: 'modbus-rtu',
          devices: [
            { unit: 3, id: 'm', registers: [{ name: 'a', table: 'input', address: 0 }] },
            {
              unit: 3,
              id: 'm',
              registers: [
                { name: 'a', table: 'input', address: 0 },
                { name: 'a', table: 'input', address: 1 },
              ],
            },
          ],
        },
      ]),
    ).toEqual([
      'serial[0].devices[1].unit: unit 3 is listed twice on this line',
      'serial[0].devices[1].id: "m" names two devices',
      'serial[0].devices[1].registers[1].name: "a" names two registers',
    ]);
    expect(problems([{ path: '/dev/x', retries: 2 }])).toEqual([
      'serial[0].retries: only with protocol: modbus-rtu',
    ]);
    expect(problems([{ ...meter, framing: 'json-lines', device: 'd' }])).toEqual([
      'serial[0].framing: not for a modbus-rtu port',
      'serial[0].device: a modbus-rtu port lists devices (unit, registers)',
    ]);
  });

  it('issue 20.4: the example config reads with SERIAL_PATH and MQTT_URL from the environment', async () => {
    const { readFileSync } = await import('node:fs');
    const text = readFileSync(new URL('../examples/modbus-rtu.yaml', import.meta.url), 'utf8');
    const c = parseConfigText(text, {
      env: { SERIAL_PATH: '/dev/ttyUSB3', MQTT_URL: 'mqtts://broker.lan:8883' },
      baseDir: '/etc/mqtt-edge',
    });
    expect(c.serial[0]).toMatchObject({ path: '/dev/ttyUSB3', modbus: { devices: expect.any(Array) } });
    expect(c.mqtt.url).toBe('mqtts://broker.lan:8883');
    expect(() => parseConfigText(text, { env: {} })).toThrow(/SERIAL_PATH is not set/);
  });
});
