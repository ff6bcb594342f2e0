import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setBridgeBit } from '@mqtt-edge/client';
import { encode } from '@mqtt-edge/codec';
import { describe, expect, it } from 'vitest';
import { routesOf, toLocal, toRemote } from '../src/bridge-topics.ts';
import { ConfigError, parseConfig } from '../src/config.ts';
import { buildBrokerOptions, describeConfig } from '../src/config-build.ts';

const FILE = '/etc/mosquitto/mosquitto.conf';
const BASE = 'listener 1883\nallow_anonymous true\n';

function bridges(text: string) {
  return parseConfig(BASE + text, FILE).bridges;
}

function err(text: string): ConfigError {
  try {
    parseConfig(BASE + text, FILE);
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('no ConfigError');
}

describe('bridge configuration', () => {
  it('parses every supported key', () => {
    const [b] = bridges(
      [
        'connection cloud',
        'address primary.example:8883, 10.0.0.2 [::1]:1884',
        'addresses backup.example',
        'topic sensors/# out 1 gw/ site1/',
        'topic cmd/+ in 2 "" remote/',
        'topic "" both 0 local/exact remote/exact',
        'topic all/#',
        'remote_clientid gw-1',
        'local_clientid bridge-local',
        'remote_username u',
        'remote_password p',
        'cleansession true',
        'bridge_protocol_version mqttv50',
        'bridge_cafile ca.pem',
        'bridge_certfile certs/client.pem',
        'bridge_keyfile certs/client.key',
        'bridge_insecure false',
        'keepalive_interval 30',
        'restart_timeout 2 60',
        'start_type once',
        'notifications false',
        'notifications_local_only true',
        'notification_topic gw/state',
        'try_private false',
        'bridge_max_packet_size 65536',
        'bridge_outgoing_retain false',
        'round_robin true',
        'bridge_queue_max_bytes 1000000',
        'bridge_queue_max_messages 5000',
        'bridge_queue_max_age 3600',
        'bridge_queue_drop_policy reject-new',
      ].join('\n'),
    );
    expect(b.name).toBe('cloud');
    expect(b.line).toBe(3);
    expect(b.addresses).toEqual([
      { host: 'primary.example', port: 8883 },
      { host: '10.0.0.2', port: 1883 },
      { host: '::1', port: 1884 },
      { host: 'backup.example', port: 1883 },
    ]);
    expect(b.topics.map(({ line: _l, ...t }) => t)).toEqual([
      { pattern: 'sensors/#', direction: 'out', qos: 1, localPrefix: 'gw/', remotePrefix: 'site1/' },
      { pattern: 'cmd/+', direction: 'in', qos: 2, localPrefix: '', remotePrefix: 'remote/' },
      { pattern: '', direction: 'both', qos: 0, localPrefix: 'local/exact', remotePrefix: 'remote/exact' },
      { pattern: 'all/#', direction: 'out', qos: 0, localPrefix: '', remotePrefix: '' },
    ]);
    expect(b).toMatchObject({
      remoteClientId: 'gw-1',
      localClientId: 'bridge-local',
      remoteUsername: 'u',
      remotePassword: 'p',
      cleanSession: true,
      protocolVersion: 5,
      cafile: '/etc/mosquitto/ca.pem',
      certfile: '/etc/mosquitto/certs/client.pem',
      keyfile: '/etc/mosquitto/certs/client.key',
      insecure: false,
      keepalive: 30,
      restartTimeout: { baseSeconds: 2, capSeconds: 60 },
      startType: 'once',
      notifications: false,
      notificationsLocalOnly: true,
      notificationTopic: 'gw/state',
      tryPrivate: false,
      maxPacketSize: 65536,
      outgoingRetain: false,
      roundRobin: true,
      queueMaxBytes: 1_000_000,
      queueMaxCount: 5000,
      queueMaxAgeSeconds: 3600,
      queueDropPolicy: 'reject-new',
    });
  });

  it("uses Mosquitto's defaults", () => {
    const [b] = bridges('connection up\naddress broker\ntopic #\n');
    expect(b).toMatchObject({
      addresses: [{ host: 'broker', port: 1883 }],
      remoteClientId: `${hostname()}.up`,
      localClientId: `local.${hostname()}.up`,
      cleanSession: false,
      protocolVersion: 4,
      keepalive: 60,
      restartTimeout: { baseSeconds: 5, capSeconds: 30 },
      startType: 'automatic',
      threshold: 10,
      idleTimeoutSeconds: 60,
      notifications: true,
      notificationTopic: `$SYS/broker/connection/${hostname()}.up/state`,
      tryPrivate: true,
      roundRobin: false,
      queueDropPolicy: 'drop-oldest',
    });
    expect(b.topics[0]).toMatchObject({ pattern: '#', direction: 'out', qos: 0 });
  });

  it('parses start_type lazy with threshold and idle_timeout', () => {
    const [b] = bridges(
      'connection up\naddress broker\ntopic #\nstart_type lazy\nthreshold 3\nidle_timeout 7\n',
    );
    expect(b).toMatchObject({ startType: 'lazy', threshold: 3, idleTimeoutSeconds: 7 });
  });

  it('keeps several bridges apart, general keys allowed in between', () => {
    const bs = bridges(
      'connection a\naddress h1\ntopic x/#\nmax_inflight_messages 10\nconnection b\naddress h2\ntopic y/# in\nremote_clientid b1\n',
    );
    expect(bs.map((b) => [b.name, b.addresses[0].host, b.topics[0].pattern, b.remoteClientId])).toEqual([
      ['a', 'h1', 'x/#', `${hostname()}.a`],
      ['b', 'h2', 'y/#', 'b1'],
    ]);
    expect(
      parseConfig(`${BASE}connection a\naddress h\ntopic #\nmax_inflight_messages 10\n`, FILE)
        .maxInflightMessages,
    ).toBe(10);
  });

  it('warns about keys accepted but not acted on', () => {
    const cfg = parseConfig(
      `${BASE}connection a\naddress h\ntopic #\nlocal_username u\nbridge_insecure true\n`,
      FILE,
    );
    const w = cfg.warnings.filter((x) => x.key === 'local_username' || x.key === 'bridge_insecure');
    expect(w.map((x) => [x.key, x.line])).toEqual([
      ['local_username', 6],
      ['bridge_insecure', 7],
    ]);
  });

  const bad: Array<[string, number, RegExp]> = [
    ['address h\n', 3, /must follow a 'connection NAME' line/],
    ['topic #\n', 3, /must follow a 'connection NAME' line/],
    ['connection\n', 3, /missing value/],
    ['connection a b\n', 3, /expected one value/],
    ['connection bad/name\n', 3, /invalid bridge name/],
    ['connection a\naddress h\ntopic #\nconnection a\n', 6, /already defined at .*:3/],
    ['connection a\ntopic #\n', 3, /has no address/],
    ['connection a\naddress h\n', 3, /has no topic/],
    ['connection a\naddress h:0\n', 4, /out of range/],
    ['connection a\naddress h:99999\n', 4, /out of range/],
    ['connection a\naddress h:x\n', 4, /invalid value/],
    ['connection a\naddress bad!host\n', 4, /invalid address/],
    ['connection a\naddress\n', 4, /missing value/],
    ['connection a\naddress h\ntopic\n', 5, /missing value/],
    ['connection a\naddress h\ntopic # sideways\n', 5, /invalid direction/],
    ['connection a\naddress h\ntopic # out 3\n', 5, /out of range/],
    ['connection a\naddress h\ntopic # out 1 local/\n', 5, /needs a remote prefix/],
    ['connection a\naddress h\ntopic # out 1 lo+/ r/\n', 5, /may not contain/],
    ['connection a\naddress h\ntopic a/#/b\n', 5, /'#' must be the last level/],
    ['connection a\naddress h\ntopic a+\n', 5, /'\+' must be a whole level/],
    ['connection a\naddress h\ntopic "" out 0 "" ""\n', 5, /empty pattern/],
    ['connection a\naddress h\ntopic # out 1 a b c\n', 5, /too many values/],
    ['connection a\naddress h\ntopic #\ncleansession maybe\n', 6, /true or false/],
    ['connection a\naddress h\ntopic #\nbridge_protocol_version mqttv6\n', 6, /mqttv31, mqttv311 or mqttv50/],
    ['connection a\naddress h\ntopic #\nkeepalive_interval 2\n', 6, /too small/],
    ['connection a\naddress h\ntopic #\nrestart_timeout\n', 6, /one value .* or two/],
    ['connection a\naddress h\ntopic #\nrestart_timeout 30 5\n', 6, /cap \(5\) is smaller/],
    ['connection a\naddress h\ntopic #\nrestart_timeout 1 2 3\n', 6, /one value .* or two/],
    ['connection a\naddress h\ntopic #\nstart_type sometimes\n', 6, /automatic, lazy or once/],
    ['connection a\naddress h\ntopic #\nstart_type\n', 6, /automatic, lazy or once/],
    ['connection a\naddress h\ntopic #\nthreshold 0\n', 6, /threshold|0/],
    ['connection a\naddress h\ntopic #\nthreshold -3\n', 6, /threshold|-3/],
    ['connection a\naddress h\ntopic #\nthreshold 1e3\n', 6, /threshold|1e3/],
    ['connection a\naddress h\ntopic #\nthreshold 99999999999\n', 6, /threshold|99999999999/],
    ['connection a\naddress h\ntopic #\nidle_timeout 0\n', 6, /idle_timeout|0/],
    ['connection a\naddress h\ntopic #\nidle_timeout 5 6\n', 6, /idle_timeout|one value/],
    ['connection a\naddress h\ntopic #\nbridge_psk abc\n', 6, /TLS-PSK/],
    ['connection a\naddress h\ntopic #\nbridge_capath /etc/ssl\n', 6, /bridge_cafile/],
    ['connection a\naddress h\ntopic #\nnotification_topic a/#\n', 6, /not a topic name/],
    ['connection a\naddress h\ntopic #\nbridge_max_packet_size 10\n', 6, /too small/],
    ['connection a\naddress h\ntopic #\nbridge_queue_drop_policy random\n', 6, /drop-oldest or reject-new/],
    ['connection a\naddress h\ntopic #\nremote_clientid a\nremote_clientid b\n', 7, /given twice/],
    [
      'connection a\naddress h\ntopic #\nbridge_certfile c.pem\n',
      3,
      /both bridge_certfile and bridge_keyfile/,
    ],
    ['connection a\naddress h\ntopic #\nbridge_certfile c\nbridge_keyfile k\n', 3, /no bridge_cafile/],
    ['connection a\naddress h\ntopic #\nremote_password p\n', 3, /without remote_username/],
  ];
  it.each(bad)('refuses %j at its line', (text, line, re) => {
    const e = err(text);
    expect(e.line).toBe(line);
    expect(e.file).toBe(FILE);
    expect(e.message).toMatch(re);
    expect(e.message.startsWith(`${FILE}:${line}: `)).toBe(true);
  });

  it('refuses more bridges, topics and addresses than any real configuration has', () => {
    let t = '';
    for (let i = 0; i < 65; i++) t += `connection b${i}\naddress h\ntopic #\n`;
    expect(err(t).message).toMatch(/more than 64 bridges/);
    expect(err(`connection a\naddress ${Array(40).fill('h').join(',')}\ntopic #\n`).message).toMatch(
      /more than 32 addresses/,
    );
    expect(err(`connection a\naddress h\n${'topic #\n'.repeat(1100)}`).message).toMatch(
      /more than 1024 topics/,
    );
  });

  it('describes bridges in `check` output', () => {
    const cfg = parseConfig(`${BASE}connection a\naddress h:1884\ntopic x/# both 1 l/ r/\n`, FILE);
    const text = describeConfig(cfg);
    expect(text).toContain('connection a  # /etc/mosquitto/mosquitto.conf:3');
    expect(text).toContain('  address h:1884');
    expect(text).toContain('  topic x/# both 1 l/ r/');
  });
});

describe('bridge TLS files', () => {
  it('are read at start-up; an unreadable or non-PEM CA file is an error at the connection line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bl-bridge-tlsconf-'));
    try {
      writeFileSync(join(dir, 'junk.pem'), 'not a certificate\n');
      const conf = (ca: string) =>
        parseConfig(`${BASE}\nconnection up\naddress h\ntopic #\nbridge_cafile ${ca}\n`, join(dir, 'b.conf'));
      const missing = await buildBrokerOptions(conf('nope.pem'), { log() {} }).catch((e: unknown) => e);
      expect(missing).toBeInstanceOf(ConfigError);
      expect((missing as ConfigError).message).toMatch(
        /b\.conf:4: connection: bridge 'up': bridge_cafile .*nope\.pem.*ENOENT/,
      );
      const junk = await buildBrokerOptions(conf('junk.pem'), { log() {} }).catch((e: unknown) => e);
      expect((junk as ConfigError).message).toMatch(/b\.conf:4: .*holds no PEM certificate/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('bridge topic remapping (Mosquitto semantics)', () => {
  const [b] = bridges(
    [
      'connection a',
      'address h',
      'topic sensors/# out 1 gw/ site1/',
      'topic cmd/+ in 2 local/ remote/',
      'topic "" both 1 here/state there/state',
      'topic raw/# both 0',
    ].join('\n'),
  );
  const out = routesOf(b.topics, 'out');
  const inn = routesOf(b.topics, 'in');

  it('strips the local prefix and adds the remote one going out', () => {
    expect(toRemote(out, 'gw/sensors/t1')).toEqual({ topic: 'site1/sensors/t1', qos: 1 });
    expect(toRemote(out, 'here/state')).toEqual({ topic: 'there/state', qos: 1 });
    expect(toRemote(out, 'raw/x')).toEqual({ topic: 'raw/x', qos: 0 });
    expect(toRemote(out, 'sensors/t1')).toBeUndefined();
    expect(toRemote(out, 'local/cmd/x')).toBeUndefined();
  });

  it('strips the remote prefix and adds the local one coming in', () => {
    expect(toLocal(inn, 'remote/cmd/reboot')).toEqual({ topic: 'local/cmd/reboot', qos: 2 });
    expect(toLocal(inn, 'there/state')).toEqual({ topic: 'here/state', qos: 1 });
    expect(toLocal(inn, 'remote/cmd/a/b')).toBeUndefined();
    expect(toLocal(inn, 'site1/sensors/t1')).toBeUndefined();
  });
});

describe('try_private', () => {
  it('sets the 0x80 bit of the protocol level in a 3.1.1 and 3.1 CONNECT only', () => {
    for (const v of [3, 4] as const) {
      const b = encode({ type: 'connect', protocolVersion: v, clientId: 'c', clean: true, keepalive: 60 }, v);
      const before = b.slice();
      expect(setBridgeBit(b)).toBe(true);
      const i = v === 4 ? 8 : 10;
      expect(b[i]).toBe(before[i] | 0x80);
      expect(b.filter((x, k) => x !== before[k]).length).toBe(1);
    }
    const pub = encode({
      type: 'publish',
      topic: 'a',
      payload: new Uint8Array(4),
      qos: 0,
      retain: false,
      dup: false,
    });
    const p2 = pub.slice();
    expect(setBridgeBit(p2)).toBe(false);
    expect(p2).toEqual(pub);
    expect(setBridgeBit(new Uint8Array([0x10]))).toBe(false);
    const hostile = new Uint8Array([0x10, 0xff, 0xff, 0xff, 0xff, 0xff]);
    expect(setBridgeBit(hostile)).toBe(false);
    expect(hostile).toEqual(new Uint8Array([0x10, 0xff, 0xff, 0xff, 0xff, 0xff]));
  });
});
