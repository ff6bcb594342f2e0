import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type BrokerConfig,
  ConfigError,
  defaultConfig,
  loadConfig,
  mosquittoOrder,
  parseConfig,
} from '../src/config.ts';
import { buildBrokerOptions, describeConfig, loadSecurity } from '../src/config-build.ts';
import { DEFAULT_BROKER_OPTIONS } from '../src/options.ts';

const root = mkdtempSync(join(tmpdir(), 'bl-config-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
function scratch(): string {
  const d = join(root, String(++n));
  mkdirSync(d);
  return d;
}

const FILE = '/etc/mosquitto/mosquitto.conf';
const KEYS = [
  'listener',
  'port',
  'bind_address',
  'protocol',
  'certfile',
  'keyfile',
  'cafile',
  'require_certificate',
  'use_identity_as_username',
  'allow_anonymous',
  'password_file',
  'acl_file',
  'persistence',
  'log_dest',
  'log_type',
  'max_packet_size',
  'max_connections',
  'per_listener_settings',
  'include_dir',
  'user',
  'topic',
];
const parse = (text: string, overrides = {}): BrokerConfig => parseConfig(text, FILE, overrides);

function configError(text: string): ConfigError {
  try {
    parse(text);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`expected a ConfigError for:\n${text}`);
}

describe('defaults (Mosquitto 2)', () => {
  it('with no file: 127.0.0.1:1883 only, anonymous allowed, stderr, the default log types', () => {
    const c = defaultConfig();
    expect(c.listeners.map((l) => [l.host, l.port, l.protocol])).toEqual([['127.0.0.1', 1883, 'mqtt']]);
    expect(c.localOnly).toBe(true);
    expect(c.allowAnonymous).toBe(true);
    expect(c.logDest).toEqual([{ kind: 'stderr' }]);
    expect(c.logTypes).toEqual(['error', 'warning', 'notice', 'information']);
    expect(c.maxInflightMessages).toBe(DEFAULT_BROKER_OPTIONS.maxInflightMessages);
    expect(c.maxQueuedMessages).toBe(1000);
    expect(c.persistence).toBe(false);
  });

  it('a file without listeners behaves the same', () => {
    const c = parse('# nothing but a comment\n\npersistence false\n');
    expect(c.localOnly).toBe(true);
    expect(c.allowAnonymous).toBe(true);
    expect(c.listeners).toHaveLength(1);
    expect(c.listeners[0].host).toBe('127.0.0.1');
  });

  it('a listener turns anonymous access off and binds every interface', () => {
    const c = parse('listener 1883\n');
    expect(c.localOnly).toBe(false);
    expect(c.allowAnonymous).toBe(false);
    expect(c.listeners[0].host).toBeUndefined();
    expect(
      c.warnings.some((w) => w.key === 'allow_anonymous' && /no client can connect/.test(w.message)),
    ).toBe(true);
    expect(parse('listener 1883\nallow_anonymous true\n').allowAnonymous).toBe(true);
  });

  it('-p gives loopback listeners, and is ignored with a warning when the file has listeners', () => {
    const c = defaultConfig({ ports: [1884, 1885] });
    expect(c.listeners.map((l) => `${l.host}:${l.port}`)).toEqual(['127.0.0.1:1884', '127.0.0.1:1885']);
    expect(c.allowAnonymous).toBe(true);
    const d = parse('listener 2000\n', { ports: [1884] });
    expect(d.listeners.map((l) => l.port)).toEqual([2000]);
    expect(d.warnings.find((w) => w.key === '-p')?.message).toMatch(/ignored/);
  });

  it('-v selects every log type', () => {
    expect(parse('log_type error\n', { verbose: true }).logTypes).toHaveLength(8);
  });
});

describe('listeners', () => {
  it('reads several listeners with their own settings', () => {
    const c = parse(`listener 1883 127.0.0.1
listener 8883
certfile certs/server.crt
keyfile /abs/server.key
cafile ca.pem
require_certificate true
use_identity_as_username true
listener 9001 0.0.0.0
protocol websockets
`);
    expect(c.listeners).toHaveLength(3);
    expect(c.listeners[0]).toMatchObject({ port: 1883, host: '127.0.0.1', protocol: 'mqtt', line: 1 });
    expect(c.listeners[1]).toMatchObject({
      port: 8883,
      host: undefined,
      certfile: '/etc/mosquitto/certs/server.crt',
      keyfile: '/abs/server.key',
      cafile: '/etc/mosquitto/ca.pem',
      requireCertificate: true,
      useIdentityAsUsername: true,
      line: 2,
    });
    expect(c.listeners[2]).toMatchObject({ port: 9001, host: '0.0.0.0', protocol: 'websockets' });
  });

  it('port and bind_address make the default listener, with a deprecation warning', () => {
    const c = parse('port 1884\nbind_address 10.0.0.1\nlistener 1885\n');
    expect(c.listeners.map((l) => `${l.host}:${l.port}`)).toEqual(['10.0.0.1:1884', 'undefined:1885']);
    expect(c.listeners[0].line).toBe(1);
    expect(c.warnings.filter((w) => /deprecated/.test(w.message)).map((w) => w.line)).toEqual([1, 2]);
    expect(c.allowAnonymous).toBe(false);
  });

  it('settings before any listener configure the default listener on 1883', () => {
    const c = parse('protocol websockets\nlistener 1884\n');
    expect(c.listeners.map((l) => [l.port, l.protocol])).toEqual([
      [1883, 'websockets'],
      [1884, 'mqtt'],
    ]);
  });

  it('listener 0 asks for an ephemeral port', () => {
    expect(parse('listener 0 127.0.0.1\n').listeners[0].port).toBe(0);
  });

  const bad: Array<[string, string, number, RegExp]> = [
    ['no port', 'listener\n', 1, /expected: listener PORT/],
    ['three arguments', 'listener 1 a b\n', 1, /expected: listener PORT/],
    ['a port out of range', 'listener 65536\n', 1, /out of range/],
    ['a port that is not a number', 'listener mqtt\n', 1, /invalid value 'mqtt'/],
    ['a unix socket', 'listener 0 /run/mqtt.sock\n', 1, /unix sockets/],
    ['a duplicate', 'listener 1883\nlistener 1883\n', 2, /duplicate listener.*:1/],
    ['a bad protocol', 'listener 1\nprotocol http\n', 2, /expected mqtt or websockets/],
    ['certfile without keyfile', 'listener 1\ncertfile a\n', 1, /needs both certfile and keyfile/],
    ['cafile without TLS', 'listener 1\ncafile a\n', 1, /cafile but no certfile/],
    ['require_certificate without TLS', 'listener 1\nrequire_certificate true\n', 1, /needs a TLS listener/],
    [
      'require_certificate without cafile',
      'listener 1\ncertfile a\nkeyfile b\nrequire_certificate true\n',
      1,
      /needs a cafile/,
    ],
    [
      'use_identity_as_username without require_certificate',
      'listener 1\ncertfile a\nkeyfile b\nuse_identity_as_username true\n',
      1,
      /needs require_certificate/,
    ],
    ['mount_point', 'listener 1\nmount_point x/\n', 2, /mount points are not supported/],
    [
      'per_listener_settings after a security key (issue 15.2: several listeners are fine now)',
      'listener 1\nallow_anonymous true\nper_listener_settings true\n',
      3,
      /must be set before any other security settings/,
    ],
  ];
  for (const [name, text, line, message] of bad) {
    it(`refuses ${name} at the right line`, () => {
      const e = configError(text);
      expect(e.file).toBe(FILE);
      expect(e.line).toBe(line);
      expect(e.message).toMatch(message);
      expect(e.message.startsWith(`${FILE}:${line}: `)).toBe(true);
    });
  }

  it('accepts per_listener_settings true with a single listener', () => {
    expect(parse('per_listener_settings true\nlistener 1\n').listeners).toHaveLength(1);
  });
});

describe('every key', () => {
  it('reads each supported key', () => {
    const c = parse(`listener 1883
allow_anonymous true
password_file passwd
acl_file /etc/mosquitto/acl
persistence true
persistence_location /var/lib/mosquitto/
autosave_interval 60
max_inflight_messages 5
max_queued_messages 0
max_queued_bytes 1048576
message_size_limit 1000
max_packet_size 2048
max_connections 100
max_keepalive 120
retain_available false
sys_interval 0
connection_messages false
log_dest stdout
log_dest file /var/log/mosquitto/mosquitto.log
log_type error
log_type subscribe
log_timestamp false
pid_file run/mosquitto.pid
per_listener_settings false
`);
    expect(c).toMatchObject({
      allowAnonymous: true,
      passwordFile: '/etc/mosquitto/passwd',
      aclFile: '/etc/mosquitto/acl',
      persistence: true,
      persistenceLocation: '/var/lib/mosquitto',
      autosaveIntervalSeconds: 60,
      maxInflightMessages: 5,
      maxQueuedMessages: 0,
      maxQueuedBytes: 1_048_576,
      messageSizeLimit: 1000,
      maxPacketSize: 2048,
      maxConnections: 100,
      maxKeepalive: 120,
      retainAvailable: false,
      sysInterval: 0,
      connectionMessages: false,
      logDest: [
        { kind: 'stdout' },
        { kind: 'file', path: '/var/log/mosquitto/mosquitto.log', file: FILE, line: 19 },
      ],
      logTypes: ['error', 'subscribe'],
      logTimestamp: false,
      pidFile: '/etc/mosquitto/run/mosquitto.pid',
    });
    expect(c.warnings).toEqual([]);
  });

  it('log_type all / none, log_dest none, and the unsupported destination (dlt) warns', () => {
    expect(parse('log_type all\n').logTypes).toHaveLength(8);
    expect(parse('log_type all\nlog_type none\n').logTypes).toEqual([]);
    expect(parse('log_dest none\n').logDest).toEqual([]);
    const c = parse('log_dest dlt\nlog_dest topic\nlog_dest stderr\n');
    expect(c.logDest).toEqual([{ kind: 'topic' }, { kind: 'stderr' }]);
    expect(c.warnings.map((w) => [w.line, w.key])).toEqual([[1, 'log_dest']]);
  });

  it('warns, with file:line, for keys it accepts and ignores', () => {
    const c = parse('user mosquitto\npersistence_file mosquitto.db\nset_tcp_nodelay true\nmax_qos 2\n');
    expect(c.warnings.map((w) => `${w.file}:${w.line} ${w.key}`)).toEqual([
      `${FILE}:1 user`,
      `${FILE}:2 persistence_file`,
      `${FILE}:3 set_tcp_nodelay`,
      `${FILE}:4 max_qos`,
    ]);
    expect(c.warnings[0].message).toMatch(/^ignored: /);
  });

  it('warns for max_keepalive below 10', () => {
    expect(parse('max_keepalive 5\n').warnings[0].key).toBe('max_keepalive');
  });

  it('takes the rest of the line as a path (paths with spaces)', () => {
    expect(parse('password_file my passwords.txt\n').passwordFile).toBe('/etc/mosquitto/my passwords.txt');
  });

  const invalid: Array<[string, RegExp]> = [
    ['allow_anonymous yes', /expected true or false/],
    ['allow_anonymous', /missing value/],
    ['allow_anonymous true false', /expected one value/],
    ['persistence 1', /expected true or false/],
    ['retain_available TRUE', /expected true or false/],
    ['connection_messages maybe', /expected true or false/],
    ['log_timestamp no', /expected true or false/],
    ['per_listener_settings x', /expected true or false/],
    ['autosave_interval -1', /out of range/],
    ['autosave_interval 1.5', /expected an integer/],
    ['max_inflight_messages 70000', /out of range/],
    ['max_queued_messages lots', /expected an integer/],
    ['max_queued_bytes -5', /out of range/],
    ['message_size_limit 268435456', /out of range/],
    ['max_packet_size 10', /too small/],
    ['max_connections 0', /refuse every client/],
    ['max_connections -2', /out of range/],
    ['max_keepalive 65536', /out of range/],
    ['sys_interval 0x10', /expected an integer/],
    ['log_dest', /missing value/],
    ['log_dest file', /needs a path/],
    ['log_dest stdout extra', /unexpected 'extra'/],
    ['log_dest carrier-pigeon', /invalid destination/],
    ['log_type verbose', /invalid value 'verbose'/],
    ['log_type', /missing value/],
    ['password_file', /expected a path/],
    ['port 0', /out of range/],
    ['bind_address', /missing value/],
    ['include_dir /nonexistent-dir-for-test', /cannot read directory.*ENOENT/],
  ];
  for (const [line, message] of invalid) {
    it(`refuses '${line}' with file:line and key`, () => {
      const e = configError(`# comment\n\n${line}\n`);
      expect(e.line).toBe(3);
      expect(e.key).toBe(line.split(' ')[0]);
      expect(e.message).toMatch(message);
    });
  }

  it('refuses a second log_dest file and conflicting max_connections', () => {
    expect(configError('log_dest file a\nlog_dest file b\n').line).toBe(2);
    expect(configError('max_connections 5\nmax_connections 6\n').message).toMatch(/whole broker.*:1/);
    expect(parse('max_connections 5\nmax_connections 5\n').maxConnections).toBe(5);
  });

  it('names an unknown key, suggesting the closest one', () => {
    const e = configError('listener 1883\nalow_anonymous true\n');
    expect(e.line).toBe(2);
    expect(e.key).toBe('alow_anonymous');
    expect(e.message).toBe(
      `${FILE}:2: alow_anonymous: unknown configuration key (did you mean 'allow_anonymous'?)`,
    );
    expect(configError('Listener 1883\n').message).toMatch(/did you mean 'listener'/);
    expect(configError('frobnicate 1\n').message).toMatch(/unknown configuration key$/);
  });

  it('refuses orphan bridge keys, plugins and other keys that would change security if ignored', () => {
    expect(configError('connection uplink\naddress broker:1883\n').message).toMatch(/has no topic/);
    expect(configError('address broker:1883\n').message).toMatch(/must follow a 'connection NAME' line/);
    expect(configError('topic # out 1\n').message).toMatch(/must follow a 'connection NAME' line/);
    expect(configError('plugin /usr/lib/dynsec.so\n').message).toMatch(/plugins are not supported/);
    expect(configError('auth_opt_backend http\n').message).toMatch(/plugins/);
    expect(configError('clientid_prefixes secure-\n').message).toMatch(/not supported/);
    expect(configError('psk_file psk\n').message).toMatch(/PSK/);
  });
});

describe('files', () => {
  it('loads a real file, resolves relative paths against its directory', () => {
    const d = scratch();
    writeFileSync(
      join(d, 'm.conf'),
      'listener 1883\npassword_file pw\nacl_file ./sub/acl\npersistence_location data\n',
    );
    const c = loadConfig(join(d, 'm.conf'), {}, '/');
    expect(c.file).toBe(join(d, 'm.conf'));
    expect(c.passwordFile).toBe(join(d, 'pw'));
    expect(c.aclFile).toBe(join(d, 'sub', 'acl'));
    expect(c.persistenceLocation).toBe(join(d, 'data'));
  });

  it('include_dir reads *.conf in Mosquitto order, and relative paths follow each file', () => {
    const d = scratch();
    const inc = join(d, 'conf.d');
    mkdirSync(inc);
    for (const name of ['b.conf', 'A.conf', '01.conf', 'a.conf', 'B.conf', '00.conf']) {
      writeFileSync(
        join(inc, name),
        `listener ${1000 + ['b', 'A', '01', 'a', 'B', '00'].indexOf(name.split('.')[0])}\n`,
      );
    }
    writeFileSync(join(inc, 'ignored.txt'), 'garbage that is never read\n');
    writeFileSync(join(inc, 'z.conf'), 'password_file pw\n');
    writeFileSync(join(d, 'm.conf'), 'allow_anonymous true\ninclude_dir conf.d\n');
    const c = loadConfig(join(d, 'm.conf'));
    expect(c.files.map((f) => f.slice(d.length + 1))).toEqual([
      'm.conf',
      'conf.d/00.conf',
      'conf.d/01.conf',
      'conf.d/A.conf',
      'conf.d/a.conf',
      'conf.d/B.conf',
      'conf.d/b.conf',
      'conf.d/z.conf',
    ]);
    expect(c.listeners.map((l) => l.port)).toEqual([1005, 1002, 1001, 1003, 1004, 1000]);
    expect(c.passwordFile).toBe(join(inc, 'pw'));
    expect(['b', 'A', 'a', 'B'].sort(mosquittoOrder)).toEqual(['A', 'a', 'B', 'b']);
  });

  it('an error in an included file names that file and line', () => {
    const d = scratch();
    mkdirSync(join(d, 'inc'));
    writeFileSync(join(d, 'inc', 'x.conf'), '# ok\nmax_inflight_messages many\n');
    writeFileSync(join(d, 'm.conf'), 'include_dir inc\n');
    expect(() => loadConfig(join(d, 'm.conf'))).toThrow(
      `${join(d, 'inc', 'x.conf')}:2: max_inflight_messages:`,
    );
    writeFileSync(join(d, 'inc', 'x.conf'), 'include_dir .\n');
    expect(() => loadConfig(join(d, 'm.conf'))).toThrow(/only be used in the main configuration file/);
  });

  it('refuses a FIFO or a device instead of hanging on it', async () => {
    const d = scratch();
    mkdirSync(join(d, 'inc'));
    execFileSync('mkfifo', [join(d, 'inc', 'x.conf')]);
    writeFileSync(join(d, 'm.conf'), 'include_dir inc\n');
    expect(() => loadConfig(join(d, 'm.conf'))).toThrow(/x\.conf is not a regular file/);
    expect(() => loadConfig('/dev/zero')).toThrow(/not a regular file/);
    const cfg = parseConfig(`password_file ${join(d, 'inc', 'x.conf')}\n`, join(d, 'p.conf'));
    await expect(loadSecurity(cfg)).rejects.toThrow(/password_file: not a regular file/);
  });

  it('reports a missing or unreadable main file', () => {
    expect(() => loadConfig(join(root, 'missing.conf'))).toThrow(
      /missing\.conf: cannot open config file.*ENOENT/,
    );
    expect(() => loadConfig(root)).toThrow(/not a regular file/);
  });
});

describe('hostile input', () => {
  it('refuses binary garbage, NUL bytes and invalid UTF-8 with a line number', () => {
    const d = scratch();
    const f = join(d, 'bin.conf');
    writeFileSync(f, Buffer.concat([Buffer.from('listener 1883\n'), randomBytes(4096)]));
    expect(() => loadConfig(f)).toThrow(ConfigError);
    writeFileSync(f, Buffer.from('listener 1883\nport 1\u0000\n'));
    expect(() => loadConfig(f)).toThrow(/bin\.conf:2: .*NUL/);
    writeFileSync(f, Buffer.from([0x70, 0x6f, 0x72, 0x74, 0x20, 0xff, 0xfe, 0x0a]));
    expect(() => loadConfig(f)).toThrow(/bin\.conf:1: .*UTF-8/);
  });

  it('refuses a huge line and a huge file without reading them whole', () => {
    const d = scratch();
    const f = join(d, 'big.conf');
    writeFileSync(f, `# ok\n${'x'.repeat(100_000)}\n`);
    expect(() => loadConfig(f)).toThrow(/big\.conf:2: line is longer than 65536 bytes/);
    writeFileSync(f, Buffer.alloc(5 * 1024 * 1024, 0x23));
    expect(() => loadConfig(f)).toThrow(/larger than/);
  });

  it('keeps escape sequences out of the error message for an unknown key', () => {
    const e = configError('\u001b[31mred 1\n');
    expect(e.message).not.toContain('\u001b');
  });

  it('arbitrary text (fast-check) parses or throws ConfigError, nothing else', () => {
    const line = fc.oneof(
      fc.string({ unit: 'grapheme', maxLength: 40 }),
      fc
        .tuple(fc.constantFrom(...KEYS), fc.array(fc.string({ maxLength: 12 }), { maxLength: 3 }))
        .map(([k, v]) => [k, ...v].join(' ')),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 8 }), (lines) => {
        try {
          parse(lines.join('\n'));
        } catch (err) {
          expect(err).toBeInstanceOf(ConfigError);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('random printable lines never crash, they parse or throw ConfigError', () => {
    const words = [
      'listener',
      'port',
      'log_type',
      'log_dest',
      'file',
      '1883',
      'true',
      '-1',
      'all',
      '#',
      '%u',
      ' ',
      '\t',
    ];
    for (let i = 0; i < 500; i++) {
      let text = '';
      for (let j = 0; j < 5; j++) {
        const len = 1 + ((i * 7 + j) % 4);
        const line: string[] = [];
        for (let k = 0; k < len; k++) line.push(words[(i * 31 + j * 17 + k * 13) % words.length]);
        text += `${line.join(' ')}\n`;
      }
      try {
        parse(text);
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
      }
    }
  });
});

const hasOpenssl = existsSync('/usr/bin/openssl');
if (!hasOpenssl) console.warn('skipping TLS config tests: /usr/bin/openssl is not installed');

describe('building BrokerOptions', () => {
  it('maps every setting and loads the password and ACL files', async () => {
    const d = scratch();
    writeFileSync(join(d, 'pw'), '');
    writeFileSync(join(d, 'acl'), 'topic read public/#\n');
    writeFileSync(
      join(d, 'm.conf'),
      'listener 0 127.0.0.1\npassword_file pw\nacl_file acl\npersistence true\npersistence_location st\nmax_packet_size 100\nmax_connections 9\n',
    );
    const cfg = loadConfig(join(d, 'm.conf'));
    const logger = { log() {} };
    const { options, security } = await buildBrokerOptions(cfg, logger);
    expect(options.listeners).toEqual([{ port: 0, host: '127.0.0.1', protocol: 'mqtt' }]);
    expect(options.allowAnonymous).toBe(false);
    expect(options.persistenceDir).toBe(join(d, 'st'));
    expect(options.maxPacketSize).toBe(100);
    expect(options.maxConnections).toBe(9);
    expect(options.logger).toBe(logger);
    expect(options.accessControl?.allowed('read', { clientId: 'x', username: undefined }, 'public/a')).toBe(
      true,
    );
    expect(
      await options.authenticator?.authenticate({ clientId: 'x', username: 'u', password: undefined }),
    ).toBe(false);
    expect(security.passwords?.users.size).toBe(0);
    const text = describeConfig(cfg, security);
    expect(text).toContain('listener 0 127.0.0.1');
    expect(text).toContain('allow_anonymous false');
    expect(text).toContain(`acl_file ${join(d, 'acl')} (1 anonymous rules, 0 users, 0 patterns)`);
    // No persistence: no directory.
    const off = await buildBrokerOptions(parseConfig('listener 1\n', join(d, 'x.conf')), logger);
    expect(off.options.persistenceDir).toBeUndefined();
  });

  it('names the password or ACL file and line when one is bad', async () => {
    const d = scratch();
    writeFileSync(join(d, 'acl'), 'topic read ok\nuser\n');
    const cfg = parseConfig('acl_file acl\n', join(d, 'm.conf'));
    await expect(loadSecurity(cfg)).rejects.toThrow(
      `${join(d, 'acl')}:2: acl_file: 'user' needs a user name`,
    );
    const missing = parseConfig('password_file nope\n', join(d, 'm.conf'));
    await expect(loadSecurity(missing)).rejects.toThrow(/nope: password_file: cannot read the file/);
  });

  it.skipIf(!hasOpenssl)(
    'reads TLS files, and refuses a key that does not match the certificate',
    async () => {
      const d = scratch();
      const make = (name: string): void => {
        execFileSync(
          'openssl',
          [
            'req',
            '-x509',
            '-newkey',
            'ec',
            '-pkeyopt',
            'ec_paramgen_curve:prime256v1',
            '-nodes',
            '-days',
            '1',
          ].concat([
            '-subj',
            `/CN=${name}`,
            '-keyout',
            join(d, `${name}.key`),
            '-out',
            join(d, `${name}.crt`),
          ]),
          { stdio: 'ignore' },
        );
      };
      make('server');
      make('other');
      writeFileSync(
        join(d, 'm.conf'),
        'listener 8883\ncertfile server.crt\nkeyfile server.key\ncafile other.crt\nrequire_certificate true\nuse_identity_as_username true\n',
      );
      const { options } = await buildBrokerOptions(loadConfig(join(d, 'm.conf')), { log() {} });
      const tls = options.listeners[0].tls!;
      expect(tls.cert).toMatch(/BEGIN CERTIFICATE/);
      expect(tls.key).toMatch(/PRIVATE KEY/);
      expect(tls.ca).toMatch(/BEGIN CERTIFICATE/);
      expect(tls).toMatchObject({ requireCertificate: true, useIdentityAsUsername: true });
      writeFileSync(join(d, 'bad.conf'), 'listener 8883\ncertfile server.crt\nkeyfile other.key\n');
      await expect(buildBrokerOptions(loadConfig(join(d, 'bad.conf')), { log() {} })).rejects.toThrow(
        /bad\.conf:1: listener: TLS files for port 8883/,
      );
      writeFileSync(join(d, 'garbage.crt'), randomBytes(500));
      writeFileSync(join(d, 'g.conf'), 'listener 8883\ncertfile garbage.crt\nkeyfile server.key\n');
      await expect(buildBrokerOptions(loadConfig(join(d, 'g.conf')), { log() {} })).rejects.toThrow(
        ConfigError,
      );
    },
  );
});

const DEBIAN = {
  conf: '/etc/mosquitto/mosquitto.conf',
  example: '/usr/share/doc/mosquitto/examples/mosquitto.conf',
  acl: '/usr/share/doc/mosquitto/examples/aclfile.example',
  pw: '/usr/share/doc/mosquitto/examples/pwfile.example',
};
const hasDebian = Object.values(DEBIAN).every((f) => existsSync(f));
if (!hasDebian)
  console.warn("skipping the Debian files test: the mosquitto package's files are not installed");

describe.skipIf(!hasDebian)("the files Debian's mosquitto package ships", () => {
  it('reads the default mosquitto.conf (include_dir, persistence, log file, pid file) without a warning', () => {
    const c = loadConfig(DEBIAN.conf);
    expect(c.warnings).toEqual([]);
    expect(c.localOnly).toBe(true);
    expect(c.persistence).toBe(true);
    expect(c.persistenceLocation).toBe('/var/lib/mosquitto');
    expect(c.pidFile).toBe('/run/mosquitto/mosquitto.pid');
    expect(c.logDest).toEqual([
      { kind: 'file', path: '/var/log/mosquitto/mosquitto.log', file: DEBIAN.conf, line: 11 },
    ]);
  });

  it('reads the fully commented example config, the example ACL and the example password file', async () => {
    expect(loadConfig(DEBIAN.example).listeners).toHaveLength(1);
    const cfg = parseConfig(`acl_file ${DEBIAN.acl}\npassword_file ${DEBIAN.pw}\n`, '/x/m.conf');
    const sec = await loadSecurity(cfg);
    expect([...sec.passwords!.users.keys()]).toEqual(['roger', 'sub_client', 'pub_client']);
    expect([...sec.passwords!.users.values()].every((u) => u.hash.kind === 'sha512')).toBe(true);
    const acl = sec.acl!;
    expect(acl.allowed('read', { clientId: 'c', username: undefined }, '$SYS/broker/uptime')).toBe(true);
    expect(acl.allowed('write', { clientId: 'c', username: 'roger' }, 'foo/bar')).toBe(true);
    expect(acl.allowed('write', { clientId: 'b1', username: 'x' }, '$SYS/broker/connection/b1/state')).toBe(
      true,
    );
    expect(acl.allowed('write', { clientId: 'b1', username: 'x' }, '$SYS/broker/connection/b2/state')).toBe(
      false,
    );
  });
});
