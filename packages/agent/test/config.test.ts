import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  loadConfig,
  parseConfig,
  parseConfigText,
  parseDuration,
  parseSize,
} from '../src/config.ts';
import { DEFAULT_COMMIT_WINDOW_MS, heldHoldMs, MAX_COMMIT_WINDOW_MS } from '../src/config-queue.ts';
import { queueOptions } from '../src/queue.ts';

const minimal = { serial: [{ path: '/dev/ttyUSB0' }], mqtt: { url: 'mqtt://127.0.0.1:1883' } };

function problems(raw: unknown, env: NodeJS.ProcessEnv = {}): Array<{ path: string; message: string }> {
  try {
    parseConfig(raw, { env, baseDir: '/etc/agent' });
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).problems;
  }
  return [];
}

describe('config: defaults', () => {
  it('fills every default from a minimal config', () => {
    const c = parseConfig(minimal, { env: { STATE_DIRECTORY: '/var/lib/a' }, baseDir: '/etc/agent' });
    expect(c.stateDir).toBe('/var/lib/a');
    expect(c.queue.dir).toBe('/var/lib/a/queue');
    expect(c.queue.fsync).toBe('batch');
    expect(c.mqtt).toMatchObject({ version: 5, qos: 1, keepalive: 30 });
    expect(c.mqtt.clientId).toBe(`mqtt-edge-agent-${c.id}`);
    expect(c.topics).toEqual({ prefix: 'sensors', reading: '{prefix}/{device}/{sensor}', payload: 'json' });
    expect(c.serial).toEqual([
      { name: 'ttyUSB0', path: '/dev/ttyUSB0', baud: 115200, framing: 'native', writeTimeoutMs: 5000 },
    ]);
    expect(c.expectedIntervalMs).toBe(60_000);
  });

  it('issue 12.12: the queue is bounded by default (256 MiB, reject-new: nothing ACKed is dropped); drop-oldest on request', () => {
    const c = parseConfig(minimal, { env: {} });
    expect(c.queue).toMatchObject({ maxBytes: 256 * 2 ** 20, dropPolicy: 'reject-new' });
    expect(c.queue.maxCount).toBeUndefined();
    expect(c.queue.maxAgeMs).toBeUndefined();
    const newest = parseConfig({ ...minimal, queue: { dropPolicy: 'drop-oldest' } }, { env: {} });
    expect(newest.queue).toMatchObject({ maxBytes: 256 * 2 ** 20, dropPolicy: 'drop-oldest' });
  });

  it('issue 18.4: status.json goes to $RUNTIME_DIRECTORY (a tmpfs under systemd), else the state dir, else agent.statusDir', () => {
    const env = { STATE_DIRECTORY: '/var/lib/a', RUNTIME_DIRECTORY: '/run/a' };
    expect(parseConfig(minimal, { env }).statusDir).toBe('/run/a');
    expect(parseConfig(minimal, { env: { STATE_DIRECTORY: '/var/lib/a' } }).statusDir).toBe('/var/lib/a');
    const set = parseConfig({ ...minimal, agent: { statusDir: 'st' } }, { env, baseDir: '/etc/agent' });
    expect(set.statusDir).toBe('/etc/agent/st');
    expect(set.stateDir).toBe('/var/lib/a');
  });

  it('resolves relative paths against the config directory', () => {
    const c = parseConfig(
      { ...minimal, agent: { stateDir: 'state' }, serial: [{ path: 'tty0' }], queue: { dir: '../q' } },
      { baseDir: '/etc/agent', env: {} },
    );
    expect(c.stateDir).toBe('/etc/agent/state');
    expect(c.serial[0].path).toBe('/etc/agent/tty0');
    expect(c.queue.dir).toBe('/etc/q');
  });

  it('parses durations, sizes and fsync intervals', () => {
    const c = parseConfig(
      {
        ...minimal,
        agent: { healthInterval: '1m', statusInterval: 5, commandTimeout: '1500ms' },
        queue: { fsync: '100ms', maxBytes: '64MiB', maxAge: '7d', maxCount: 1000, dropPolicy: 'drop-oldest' },
      },
      { env: {} },
    );
    expect(c.healthIntervalMs).toBe(60_000);
    expect(c.statusIntervalMs).toBe(5000);
    expect(c.commandTimeoutMs).toBe(1500);
    expect(c.queue).toMatchObject({
      fsync: { intervalMs: 100 },
      maxBytes: 64 * 2 ** 20,
      maxAgeMs: 7 * 86_400_000,
      maxCount: 1000,
      dropPolicy: 'drop-oldest',
    });
    expect(parseDuration('2h')).toBe(7_200_000);
    expect(parseDuration('-1s')).toBeUndefined();
    expect(parseSize('1.5KiB')).toBe(1536);
    expect(parseSize('12 parsecs')).toBeUndefined();
  });

  it('takes the password from the environment over the file, and from a password file', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'agent-cfg-'));
    writeFileSync(path.join(dir, 'pw'), 's3cret\n');
    const base = { ...minimal, mqtt: { ...minimal.mqtt, username: 'u', password: 'file' } };
    expect(parseConfig(base, { env: {} }).mqtt.password).toBe('file');
    expect(parseConfig(base, { env: { MQTT_EDGE_PASSWORD: 'env' } }).mqtt.password).toBe('env');
    const custom = { ...minimal, mqtt: { ...minimal.mqtt, username: 'u', passwordEnv: 'PW' } };
    expect(parseConfig(custom, { env: { PW: 'x' } }).mqtt.password).toBe('x');
    const fromFile = { ...minimal, mqtt: { ...minimal.mqtt, username: 'u', passwordFile: 'pw' } };
    expect(parseConfig(fromFile, { env: {}, baseDir: dir }).mqtt.password).toBe('s3cret');
  });
});

describe('config: errors name the key and what is wrong', () => {
  const cases: Array<[string, unknown, string, RegExp]> = [
    ['empty document', null, '', /empty/],
    ['no serial', { mqtt: minimal.mqtt }, 'serial', /missing/],
    ['serial not a list', { ...minimal, serial: { path: 'x' } }, 'serial', /list/],
    [
      'typo in a key',
      { ...minimal, serial: [{ path: 'x', baudrate: 9600 }] },
      'serial[0].baudrate',
      /did you mean baud/,
    ],
    ['odd baud', { ...minimal, serial: [{ path: 'x', baud: 12345 }] }, 'serial[0].baud', /standard rate/],
    ['baud as text', { ...minimal, serial: [{ path: 'x', baud: 'fast' }] }, 'serial[0].baud', /integer/],
    [
      'path and usb',
      { ...minimal, serial: [{ path: 'x', usb: { vendorId: '2341' } }] },
      'serial[0]',
      /exactly one/,
    ],
    [
      'bad usb id',
      { ...minimal, serial: [{ usb: { vendorId: 'arduino' } }] },
      'serial[0].usb.vendorId',
      /hex/,
    ],
    [
      'text framing without device',
      { ...minimal, serial: [{ path: 'x', framing: 'json-lines' }] },
      'serial[0].device',
      /required/,
    ],
    [
      'bad framing',
      { ...minimal, serial: [{ path: 'x', framing: 'slip' }] },
      'serial[0].framing',
      /one of native/,
    ],
    [
      'two ports same path',
      { ...minimal, serial: [{ path: 'x' }, { path: 'x', name: 'b' }] },
      'serial[1].path',
      /twice/,
    ],
    [
      'device id with slash',
      { ...minimal, serial: [{ path: 'x', device: 'a/b' }] },
      'serial[0].device',
      /A-Z/,
    ],
    ['no url', { serial: minimal.serial, mqtt: {} }, 'mqtt.url', /missing/],
    ['http url', { ...minimal, mqtt: { url: 'http://x' } }, 'mqtt.url', /mqtt:\/\//],
    ['not a url', { ...minimal, mqtt: { url: 'broker:1883:x' } }, 'mqtt.url', /scheme|URL/],
    ['credentials in url', { ...minimal, mqtt: { url: 'mqtt://u:p@h' } }, 'mqtt.url', /credentials/],
    ['version 3', { ...minimal, mqtt: { ...minimal.mqtt, version: 3 } }, 'mqtt.version', /4\.\.5/],
    ['qos 3', { ...minimal, mqtt: { ...minimal.mqtt, qos: 3 } }, 'mqtt.qos', /0\.\.2/],
    ['tls on mqtt://', { ...minimal, mqtt: { ...minimal.mqtt, tls: {} } }, 'mqtt.tls', /mqtts/],
    [
      'missing CA file',
      { ...minimal, mqtt: { url: 'mqtts://h', tls: { ca: '/nonexistent/ca.pem' } } },
      'mqtt.tls.ca',
      /cannot read/,
    ],
    [
      '3.1.1 password without user',
      { ...minimal, mqtt: { ...minimal.mqtt, version: 4, password: 'p' } },
      'mqtt.password',
      /username/,
    ],
    ['wildcard prefix', { ...minimal, topics: { prefix: 'a/+' } }, 'topics.prefix', /wildcard/],
    [
      'template without sensor',
      { ...minimal, topics: { reading: '{prefix}/{device}' } },
      'topics.reading',
      /\{sensor\}/,
    ],
    [
      'unknown placeholder',
      { ...minimal, topics: { reading: '{prefix}/{device}/{sensor}/{unit}' } },
      'topics.reading',
      /\{unit\}/,
    ],
    ['bad payload', { ...minimal, topics: { payload: 'xml' } }, 'topics.payload', /json, cbor, raw/],
    ['bad fsync', { ...minimal, queue: { fsync: 'always' } }, 'queue.fsync', /batch, never/],
    ['bad size', { ...minimal, queue: { maxBytes: 'lots' } }, 'queue.maxBytes', /size/],
    [
      'bad drop policy',
      { ...minimal, queue: { dropPolicy: 'drop-newest' } },
      'queue.dropPolicy',
      /reject-new/,
    ],
    ['unknown top-level key', { ...minimal, brokers: [] }, 'brokers', /unknown key/],
    ['agent id with space', { ...minimal, agent: { id: 'my agent' } }, 'agent.id', /topic level/],
  ];
  for (const [what, raw, key, message] of cases) {
    it(what, () => {
      const p = problems(raw);
      const hit = p.find((x) => x.path === key);
      expect(hit, JSON.stringify(p)).toBeDefined();
      expect(hit!.message).toMatch(message);
    });
  }

  it('reports every problem at once, not the first only', () => {
    const p = problems({ serial: [{ path: 'x', baud: 1 }], mqtt: { url: 'http://x', qos: 9 } });
    expect(p.map((x) => x.path).sort()).toEqual(['mqtt.qos', 'mqtt.url', 'serial[0].baud']);
  });

  it('gives YAML line numbers for key paths', () => {
    const text = [
      'serial:',
      '  - path: /dev/ttyUSB0',
      '    baud: 12345',
      'mqtt:',
      '  url: http://x',
      '',
    ].join('\n');
    try {
      parseConfigText(text, { env: {} });
      expect.unreachable();
    } catch (e) {
      const p = (e as ConfigError).problems;
      expect(p.find((x) => x.path === 'serial[0].baud')?.line).toBe(3);
      expect(p.find((x) => x.path === 'mqtt.url')?.line).toBe(5);
      expect((e as Error).message).toMatch(/serial\[0\]\.baud \(line 3\)/);
    }
  });

  it('rejects YAML syntax errors, duplicate keys and alias bombs with a line', () => {
    expect(() => parseConfigText('serial: [\n', { env: {} })).toThrow(ConfigError);
    expect(() => parseConfigText('mqtt: {url: a}\nmqtt: {url: b}\n', { env: {} })).toThrow(/YAML/);
    const bomb = [
      'a: &a [x,x,x,x,x,x,x,x,x]',
      ...Array.from(
        { length: 12 },
        (_, i) =>
          `b${i}: &b${i} [*${i === 0 ? 'a' : `b${i - 1}`},*${i === 0 ? 'a' : `b${i - 1}`},*${i === 0 ? 'a' : `b${i - 1}`},*${i === 0 ? 'a' : `b${i - 1}`},*${i === 0 ? 'a' : `b${i - 1}`},*${i === 0 ? 'a' : `b${i - 1}`},*${i === 0 ? 'a' : `b${i - 1}`},*${i === 0 ? 'a' : `b${i - 1}`},*${i === 0 ? 'a' : `b${i - 1}`}]`,
      ),
    ].join('\n');
    const t0 = performance.now();
    expect(() => parseConfigText(bomb, { env: {} })).toThrow(ConfigError);
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('JSON configs: parsed without yaml, yet duplicate keys and line numbers as for YAML', () => {
    expect(parseConfigText(JSON.stringify(minimal, null, 2), { env: {} }).mqtt.url).toBe(
      'mqtt://127.0.0.1:1883',
    );
    // Keys repeated in nested objects, arrays of objects, escaped quotes: still one of each.
    const ok =
      '{"serial":[{"path":"/dev/a\\"b"},{"path":"/dev/c","name":"c"}],"mqtt":{"url":"mqtt://h"},"topics":{"prefix":"p"}}';
    expect(parseConfigText(ok, { env: {} }).serial[0].path).toBe('/dev/a"b');
    const dup = '{"serial":[{"path":"/dev/a"}],"mqtt":{"url":"mqtt://a"},"mqtt":{"url":"mqtt://b"}}';
    expect(() => parseConfigText(dup, { env: {} })).toThrow(/YAML/);
    const nestedDup = '{"serial":[{"path":"/dev/a","path":"/dev/b"}],"mqtt":{"url":"mqtt://a"}}';
    expect(() => parseConfigText(nestedDup, { env: {} })).toThrow(/YAML/);
    const bad = '{\n  "serial": [{ "path": "/dev/a", "baud": 12345 }],\n  "mqtt": { "url": "http://x" }\n}\n';
    try {
      parseConfigText(bad, { env: {} });
      expect.unreachable();
    } catch (e) {
      const p = (e as ConfigError).problems;
      expect(p.find((x) => x.path === 'serial[0].baud')?.line).toBe(2);
      expect(p.find((x) => x.path === 'mqtt.url')?.line).toBe(3);
    }
  });

  it('reads JSON files and reports unreadable ones', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'agent-cfg-'));
    const f = path.join(dir, 'agent.json');
    writeFileSync(f, JSON.stringify(minimal));
    expect(loadConfig(f, {}).serial[0].path).toBe('/dev/ttyUSB0');
    expect(() => loadConfig(path.join(dir, 'missing.yaml'), {})).toThrow(/ENOENT/);
  });

  it('never throws anything but ConfigError on arbitrary documents', () => {
    fc.assert(
      fc.property(fc.anything({ maxDepth: 4 }), (raw) => {
        try {
          parseConfig(raw, { env: {} });
        } catch (e) {
          if (!(e instanceof ConfigError)) throw e;
        }
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (text) => {
        try {
          parseConfigText(text, { env: {} });
        } catch (e) {
          if (!(e instanceof ConfigError)) throw e;
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('issue 14: homeassistant and metrics settings', () => {
  it("issue 14.1: homeassistant is off by default, with HA's default prefix and a node id from the agent id", () => {
    const c = parseConfig({ ...minimal, agent: { id: 'gw.1:a' } }, { env: {} });
    expect(c.homeassistant).toEqual({ enabled: false, discoveryPrefix: 'homeassistant', nodeId: 'gw_1_a' });
    const on = parseConfig(
      { ...minimal, homeassistant: { enabled: true, discovery_prefix: 'ha/disc', node_id: 'shed-gw' } },
      { env: {} },
    );
    expect(on.homeassistant).toEqual({ enabled: true, discoveryPrefix: 'ha/disc', nodeId: 'shed-gw' });
  });

  it('issue 14.1: homeassistant settings are validated with their key paths', () => {
    const ha = (h: unknown, extra: object = {}) => problems({ ...minimal, ...extra, homeassistant: h });
    expect(ha({ enabled: 'yes' })).toEqual([expect.objectContaining({ path: 'homeassistant.enabled' })]);
    expect(ha({ node_id: 'a.b' })[0]).toMatchObject({
      path: 'homeassistant.node_id',
      message: expect.stringMatching(/A-Z a-z 0-9 _ -/),
    });
    expect(ha({ discovery_prefix: 'ha/#' })[0]).toMatchObject({ path: 'homeassistant.discovery_prefix' });
    expect(ha({ discovery_prefix: 'ha/' })[0]).toMatchObject({ path: 'homeassistant.discovery_prefix' });
    expect(ha({ discoveryPrefix: 'x' })[0]).toMatchObject({
      path: 'homeassistant.discoveryPrefix',
      message: expect.stringMatching(/did you mean discovery_prefix/),
    });
    // Home Assistant reads JSON or text state topics, not CBOR.
    expect(ha({ enabled: true }, { topics: { payload: 'cbor' } })[0]).toMatchObject({
      path: 'topics.payload',
      message: expect.stringMatching(/Home Assistant/),
    });
    expect(ha({ enabled: false }, { topics: { payload: 'cbor' } })).toEqual([]);
  });

  it('issue 14.3: metrics are off by default; listen takes host:port, [v6]:port', () => {
    expect(parseConfig(minimal, { env: {} }).metrics).toBeUndefined();
    const m = (listen: unknown) => parseConfig({ ...minimal, metrics: { listen } }, { env: {} }).metrics;
    expect(m('127.0.0.1:9101')).toEqual({ listen: '127.0.0.1:9101', host: '127.0.0.1', port: 9101 });
    expect(m('[::1]:0')).toEqual({ listen: '[::1]:0', host: '::1', port: 0 });
    expect(m('localhost:9101')).toMatchObject({ host: 'localhost', port: 9101 });
    for (const bad of ['9101', ':9101', '127.0.0.1:99999', '127.0.0.1:x', 'a b:1', '[::1]', 9101])
      expect(problems({ ...minimal, metrics: { listen: bad } })[0], String(bad)).toMatchObject({
        path: 'metrics.listen',
      });
    expect(problems({ ...minimal, metrics: { port: 1 } })[0]).toMatchObject({ path: 'metrics.port' });
  });
});

describe('issue 19: liveness settings', () => {
  it('issue 19.2: agent.expectedInterval (default 60s, 0 off) and serial[].expectedInterval (none by default, 0 off); issue 19.1: serial[].writeTimeout (default 5s)', () => {
    const c = parseConfig(
      {
        ...minimal,
        agent: { expectedInterval: '10s' },
        serial: [
          { path: '/dev/ttyUSB0', expectedInterval: '250ms', writeTimeout: '2s' },
          { path: '/dev/ttyUSB1', expectedInterval: 0 },
          { path: '/dev/ttyACM0', framing: 'key-value', device: 'board' },
        ],
      },
      { env: {} },
    );
    expect(c.expectedIntervalMs).toBe(10_000);
    expect(c.serial.map((p) => [p.expectedIntervalMs, p.writeTimeoutMs])).toEqual([
      [250, 2000],
      [0, 5000],
      [undefined, 5000],
    ]);
    expect(parseConfig({ ...minimal, agent: { expectedInterval: 0 } }, { env: {} }).expectedIntervalMs).toBe(
      0,
    );
  });

  it('issue 19: the settings are validated with their key paths', () => {
    const agent = (v: unknown) => problems({ ...minimal, agent: { expectedInterval: v } });
    const port = (extra: object) => problems({ ...minimal, serial: [{ path: '/dev/ttyUSB0', ...extra }] });
    expect(agent('often')[0]).toMatchObject({
      path: 'agent.expectedInterval',
      message: expect.stringMatching(/duration/),
    });
    expect(agent('5ms')[0]).toMatchObject({
      path: 'agent.expectedInterval',
      message: expect.stringMatching(/0 \(off\) or at least 100ms/),
    });
    expect(agent('2d')[0]).toMatchObject({ path: 'agent.expectedInterval' });
    expect(port({ expectedInterval: '50ms' })[0]).toMatchObject({ path: 'serial[0].expectedInterval' });
    expect(port({ writeTimeout: '10ms' })[0]).toMatchObject({ path: 'serial[0].writeTimeout' });
    expect(port({ writeTimeout: 0 })[0]).toMatchObject({ path: 'serial[0].writeTimeout' });
    expect(port({ writeTimeout: '1h' })[0]).toMatchObject({ path: 'serial[0].writeTimeout' });
    expect(port({ expectedinterval: '1s' })[0]).toMatchObject({
      message: expect.stringMatching(/did you mean expectedInterval/),
    });
  });
});

describe('issue 18.4: queue.commitWindow', () => {
  it('issue 18.4: defaults to DEFAULT_COMMIT_WINDOW_MS, parses a duration, and reaches the queue', () => {
    const log = { log: () => {} } as unknown as Parameters<typeof queueOptions>[1];
    const d = parseConfig(minimal, { env: {} });
    expect(d.queue.commitWindowMs).toBe(DEFAULT_COMMIT_WINDOW_MS);
    expect(queueOptions(d.queue, log).commitWindowMs).toBe(DEFAULT_COMMIT_WINDOW_MS);
    const c = parseConfig({ ...minimal, queue: { commitWindow: '250ms' } }, { env: {} });
    expect(c.queue.commitWindowMs).toBe(250);
    expect(queueOptions(c.queue, log).commitWindowMs).toBe(250);
    expect(parseConfig({ ...minimal, queue: { commitWindow: 0 } }, { env: {} }).queue.commitWindowMs).toBe(0);
  });

  it('issue 18.4: windows up to 5 minutes (70 s at 1 reading/s); HELD from 250 ms on, t = window + 1 s', () => {
    const c = parseConfig({ ...minimal, queue: { commitWindow: '70s' } }, { env: {} });
    expect(c.queue.commitWindowMs).toBe(70_000);
    expect(heldHoldMs(c.queue)).toBe(71_000);
    expect(parseConfig({ ...minimal, queue: { commitWindow: '5m' } }, { env: {} }).queue.commitWindowMs).toBe(
      MAX_COMMIT_WINDOW_MS,
    );
    expect(heldHoldMs(parseConfig(minimal, { env: {} }).queue)).toBe(0);
    expect(heldHoldMs(parseConfig({ ...minimal, queue: { commitWindow: '249ms' } }, { env: {} }).queue)).toBe(
      0,
    );
    expect(heldHoldMs(parseConfig({ ...minimal, queue: { commitWindow: '250ms' } }, { env: {} }).queue)).toBe(
      1250,
    );
    expect(heldHoldMs(parseConfig({ ...minimal, queue: { fsync: '1s' } }, { env: {} }).queue)).toBe(0);
  });

  it("issue 18.4: with HELD windows the acknowledge cursor is persisted every 4 windows (its page costs a quarter of a commit's)", () => {
    const log = { log: () => {} } as unknown as Parameters<typeof queueOptions>[1];
    const long = parseConfig({ ...minimal, queue: { commitWindow: '70s' } }, { env: {} });
    expect(queueOptions(long.queue, log).cursorIntervalMs).toBe(280_000);
    const quarter = parseConfig({ ...minimal, queue: { commitWindow: '250ms' } }, { env: {} });
    expect(queueOptions(quarter.queue, log).cursorIntervalMs).toBe(1000);
    // the default window keeps the queue's own default (1 s)
    expect(queueOptions(parseConfig(minimal, { env: {} }).queue, log).cursorIntervalMs).toBeUndefined();
  });

  it('issue 18.4: bounded, and only with fsync batch (the interval policies do not wait for an fsync)', () => {
    expect(problems({ ...minimal, queue: { commitWindow: '301s' } }).map((p) => p.path)).toEqual([
      'queue.commitWindow',
    ]);
    const p = problems({ ...minimal, queue: { fsync: '1s', commitWindow: '100ms' } });
    expect(p.map((x) => x.path)).toEqual(['queue.commitWindow']);
    expect(p[0].message).toMatch(/fsync: batch/);
    // with an interval policy and no commitWindow set, the default does not apply
    const c = parseConfig({ ...minimal, queue: { fsync: '1s' } }, { env: {} });
    expect(
      queueOptions(c.queue, { log: () => {} } as unknown as Parameters<typeof queueOptions>[1])
        .commitWindowMs,
    ).toBe(0);
  });
});
