/**
 * broker-lite bridged to Debian's mosquitto started by the test: topics in, out and both with
 * prefixes, notifications on both sides, no echo, TLS with client certificates made by openssl,
 * failover across addresses, and an upstream that is away when the bridge starts.
 */
import { hostname } from 'node:os';
import { afterAll, describe, expect, it } from 'vitest';
import { eventually, forwardPort, Recorder, startBridged } from './bridge-helpers.ts';
import { freePort, hasMosquitto, startMosquitto } from './helpers/mosquitto.ts';
import { HAS_OPENSSL, TestPki } from './helpers/tls.ts';

const HAS = hasMosquitto();
if (!HAS)
  console.warn('mosquitto not installed (/usr/sbin/mosquitto): bridge tests against mosquitto skipped');
if (!HAS_OPENSSL) console.warn('openssl not installed: bridge TLS test skipped');

/** The bridge `connection up`'s state: named by its remote client id, HOSTNAME.up by default. */
const UP_STATE = `$SYS/broker/connection/${hostname()}.up/state`;

const cleanup: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
});

describe.skipIf(!HAS)('bridge to mosquitto', () => {
  it('forwards out, in and both with prefixes, publishes its state on both sides, does not echo', async () => {
    const m = await startMosquitto();
    cleanup.push(() => m.stop());
    const b = await startBridged(
      [
        'connection up',
        `address 127.0.0.1:${m.port}`,
        'topic sensors/# out 1 gw/ site1/',
        'topic cmd/# in 1 local/ remote/',
        'topic shared/# both 1',
        'topic q0/# out 0',
        'restart_timeout 1',
        'cleansession true',
      ].join('\n'),
    );
    cleanup.push(() => b.close());
    await b.waitLog((l) => l.message === 'bridge connected');
    const up = await Recorder.open(m.port, [
      'site1/#',
      'shared/#',
      'q0/#',
      'sensors/#',
      '$SYS/broker/connection/+/state',
    ]);
    const local = await Recorder.open(b.port, [
      'local/#',
      'shared/#',
      'remote/#',
      '$SYS/broker/connection/+/state',
    ]);
    cleanup.push(
      () => up.end(),
      () => local.end(),
    );

    // Retained state, 1 on both sides (mosquitto accepts a $SYS publish from a bridge only).
    await up.until(() => up.on(UP_STATE).some((x) => x.payload === '1'), 'remote state 1');
    await local.until(() => local.on(UP_STATE).some((x) => x.payload === '1'), 'local state 1');

    await local.client.publish('gw/sensors/t1', 'out-1', { qos: 1 });
    await local.client.publish('gw/sensors/t1', 'out-2', { qos: 1 });
    await local.client.publish('q0/x', 'qos0', { qos: 0 });
    await up.until(
      () => up.on('site1/sensors/t1').length === 2 && up.on('q0/x').length === 1,
      'out messages',
    );
    expect(up.on('site1/sensors/t1').map((x) => x.payload)).toEqual(['out-1', 'out-2']);
    // Only the prefixed topic crosses: the unprefixed one is not subscribed on the local side.
    await local.client.publish('sensors/t1', 'not-bridged', { qos: 1 });

    await up.client.publish('remote/cmd/reboot', 'in-1', { qos: 1 });
    await up.client.publish('cmd/reboot', 'not-bridged', { qos: 1 });
    await local.until(() => local.on('local/cmd/reboot').length === 1, 'in message');
    expect(local.on('local/cmd/reboot')[0].payload).toBe('in-1');
    expect(local.got.filter((x) => x.topic.startsWith('remote/'))).toEqual([]);

    // both: each side gets the other's message once, and its own once (no echo back).
    await local.client.publish('shared/a', 'from-local', { qos: 1 });
    await up.until(() => up.on('shared/a').length === 1, 'shared/a upstream');
    await up.client.publish('shared/b', 'from-remote', { qos: 1 });
    await local.until(() => local.on('shared/b').length === 1, 'shared/b locally');
    // A marker through both hops after everything above: whatever echo there was came before it.
    await local.client.publish('shared/marker', 'm', { qos: 1 });
    await up.until(() => up.on('shared/marker').length === 1, 'marker upstream');
    await up.client.publish('shared/marker2', 'm', { qos: 1 });
    await local.until(() => local.on('shared/marker2').length === 1, 'marker2 locally');
    expect(local.on('shared/a').length).toBe(1);
    expect(up.on('shared/b').length).toBe(1);
    expect(up.on('sensors/t1')).toEqual([]);
    expect(up.on('site1/sensors/t1').length).toBe(2);

    const s = b.bridges.stats()[0];
    expect(s).toMatchObject({ name: 'up', state: 'connected', connects: 1, outDropped: 0 });
    expect(s.outQueued).toBeGreaterThanOrEqual(4);
    expect(s.queue.count).toBe(0);
    expect(s.inReceived).toBeGreaterThanOrEqual(2);

    // The upstream goes away: the local state says so, retained.
    await m.kill();
    await local.until(() => local.on(UP_STATE).at(-1)?.payload === '0', 'local state 0');
    const down = await b.waitLog((l) => l.message === 'bridge disconnected');
    expect(String(down.fields?.reason)).not.toBe('');
  }, 30_000);

  it('MQTT 5 to mosquitto: both ways, no echo (no-local on the remote subscription)', async () => {
    const m = await startMosquitto();
    cleanup.push(() => m.stop());
    const b = await startBridged(
      [
        'connection v5',
        `address 127.0.0.1:${m.port}`,
        'topic five/# both 1',
        'bridge_protocol_version mqttv50',
        'restart_timeout 1',
        'cleansession true',
      ].join('\n'),
    );
    cleanup.push(() => b.close());
    await b.waitLog((l) => l.message === 'bridge connected');
    const up = await Recorder.open(m.port, ['five/#']);
    const local = await Recorder.open(b.port, ['five/#']);
    cleanup.push(
      () => up.end(),
      () => local.end(),
    );
    await local.client.publish('five/a', '1', { qos: 1 });
    await up.until(() => up.on('five/a').length === 1, 'five/a upstream');
    await up.client.publish('five/b', '2', { qos: 1 });
    await local.until(() => local.on('five/b').length === 1, 'five/b locally');
    await local.client.publish('five/fence', 'f', { qos: 1 });
    await up.until(() => up.on('five/fence').length === 1, 'fence upstream');
    await up.client.publish('five/fence2', 'f', { qos: 1 });
    await local.until(() => local.on('five/fence2').length === 1, 'fence2 locally');
    expect(local.on('five/a').length).toBe(1);
    expect(up.on('five/b').length).toBe(1);
  }, 20_000);

  it('fails over to the next address and says why the first one failed', async () => {
    const m = await startMosquitto();
    cleanup.push(() => m.stop());
    const dead = await freePort();
    const b = await startBridged(
      [
        'connection fo',
        `address 127.0.0.1:${dead} 127.0.0.1:${m.port}`,
        'topic fo/# out 1',
        'restart_timeout 1',
        'cleansession true',
      ].join('\n'),
    );
    cleanup.push(() => b.close());
    const fail = await b.waitLog((l) => l.message === 'bridge connect failed');
    expect(fail.fields).toMatchObject({ address: `127.0.0.1:${dead}`, nextAddress: `127.0.0.1:${m.port}` });
    expect(String(fail.fields?.reason)).toMatch(/ECONNREFUSED/);
    const ok = await b.waitLog((l) => l.message === 'bridge connected');
    expect(ok.fields?.address).toBe(`127.0.0.1:${m.port}`);
    expect(b.bridges.stats()[0].connectFailures).toBe(1);
  }, 20_000);

  it('keeps QoS 1 messages on disk while the upstream is away and delivers them in order', async () => {
    const port = await freePort();
    const b = await startBridged(
      [
        'connection later',
        `address 127.0.0.1:${port}`,
        'topic data/# out 1',
        'restart_timeout 1',
        'remote_clientid later-1',
      ].join('\n'),
    );
    cleanup.push(() => b.close());
    const local = await Recorder.open(b.port, ['data/#']);
    cleanup.push(() => local.end());
    const N = 300;
    const acks: Promise<unknown>[] = [];
    for (let i = 0; i < N; i++) acks.push(local.client.publish('data/x', String(i), { qos: 1 }));
    // Local traffic is not held up by the missing upstream: every publish is acknowledged.
    await Promise.all(acks);
    await local.until(() => local.on('data/x').length === N, 'local deliveries');
    // Each message is acknowledged locally once it is in the queue on disk.
    await eventually(() => b.bridges.stats()[0].queue.count === N, 'all messages queued', 20_000);
    expect(b.bridges.stats()[0].state).not.toBe('connected');

    // mosquitto starts on another port and the test subscribes there first; only then does the
    // bridge's address come up (a forwarder), so no message can arrive before the subscriber.
    const m = await startMosquitto();
    cleanup.push(() => m.stop());
    const up = await Recorder.open(m.port, ['data/#']);
    cleanup.push(() => up.end());
    const fwd = await forwardPort(port, m.port);
    cleanup.push(() => fwd.close());
    await up.until(() => up.on('data/x').length >= N, 'drained messages', 15_000);
    const got = up.on('data/x').map((x) => Number(x.payload));
    const firsts = got.filter((v, i) => got.indexOf(v) === i);
    expect(firsts).toEqual([...Array(N).keys()]);
    await b.waitLog((l) => l.message === 'bridge connected');
    // The last PUBACKs may still be on their way back.
    await eventually(() => b.bridges.stats()[0].queue.count === 0, 'queue drained');
    expect(b.bridges.stats()[0].outAcked).toBeGreaterThanOrEqual(N);
  }, 30_000);
});

describe.skipIf(!HAS || !HAS_OPENSSL)('bridge to mosquitto over TLS with a client certificate', () => {
  it('connects with certificates made by openssl and forwards both ways', async () => {
    const pki = new TestPki('bl-bridge-tls-')
      .ca()
      .leaf('server', { cn: '127.0.0.1', san: 'IP:127.0.0.1' })
      .leaf('client', { cn: 'gateway-1' });
    cleanup.push(() => pki.remove());
    const dir = pki.dir;

    // A plain listener for the test's own clients, and a TLS one that requires a certificate.
    const tlsPort = await freePort();
    const m = await startMosquitto({
      config: [
        `listener ${tlsPort} 127.0.0.1`,
        `cafile ${dir}/ca.crt`,
        `certfile ${dir}/server.crt`,
        `keyfile ${dir}/server.key`,
        'require_certificate true',
        'use_identity_as_username true',
      ].join('\n'),
    });
    cleanup.push(() => m.stop());
    const b = await startBridged(
      [
        'connection secure',
        `address 127.0.0.1:${tlsPort}`,
        'topic up/# out 1',
        'topic down/# in 1',
        `bridge_cafile ${dir}/ca.crt`,
        `bridge_certfile ${dir}/client.crt`,
        `bridge_keyfile ${dir}/client.key`,
        'restart_timeout 1',
        'cleansession true',
      ].join('\n'),
    );
    cleanup.push(() => b.close());
    await b.waitLog((l) => l.message === 'bridge connected');
    const up = await Recorder.open(m.port, ['up/#']);
    const local = await Recorder.open(b.port, ['down/#']);
    cleanup.push(
      () => up.end(),
      () => local.end(),
    );
    await local.client.publish('up/t', 'over-tls', { qos: 1 });
    await up.until(() => up.on('up/t').length === 1, 'up/t over TLS');
    await up.client.publish('down/t', 'back', { qos: 1 });
    await local.until(() => local.on('down/t').length === 1, 'down/t over TLS');
    expect(m.log()).toMatch(/as gateway-1|New bridge connected/);
  }, 30_000);

  it('says why when the server certificate is not trusted', async () => {
    const pki = new TestPki('bl-bridge-tls2-')
      .selfSigned('server', '127.0.0.1', 'IP:127.0.0.1')
      .ca('other', 'other-ca');
    cleanup.push(() => pki.remove());
    const dir = pki.dir;
    const tlsPort = await freePort();
    const m = await startMosquitto({
      config: [
        `listener ${tlsPort} 127.0.0.1`,
        `certfile ${dir}/server.crt`,
        `keyfile ${dir}/server.key`,
      ].join('\n'),
    });
    cleanup.push(() => m.stop());
    const b = await startBridged(
      [
        'connection bad',
        `address 127.0.0.1:${tlsPort}`,
        'topic x/# out 1',
        `bridge_cafile ${dir}/other.crt`,
        'restart_timeout 1',
      ].join('\n'),
    );
    cleanup.push(() => b.close());
    const fail = await b.waitLog((l) => l.message === 'bridge connect failed');
    expect(String(fail.fields?.reason)).toMatch(/certificate|self.signed/i);
  }, 20_000);
});

describe.skipIf(!HAS || !HAS_OPENSSL)('bridge_insecure against mosquitto', () => {
  it('skips the host-name check only: a trusted chain with another name connects, an untrusted one does not', async () => {
    // The server's certificate names another host than the 127.0.0.1 the bridge dials.
    const pki = new TestPki('bl-bridge-insecure-')
      .selfSigned('server', 'elsewhere.example')
      .selfSigned('other', 'other.example');
    cleanup.push(() => pki.remove());
    const dir = pki.dir;
    const tlsPort = await freePort();
    const m = await startMosquitto({
      config: [
        `listener ${tlsPort} 127.0.0.1`,
        `certfile ${dir}/server.crt`,
        `keyfile ${dir}/server.key`,
      ].join('\n'),
    });
    cleanup.push(() => m.stop());
    const bridge = async (name: string, lines: string[]) => {
      const b = await startBridged(
        [
          `connection ${name}`,
          `address 127.0.0.1:${tlsPort}`,
          'topic x/# out 1',
          'restart_timeout 1',
          ...lines,
        ].join('\n'),
      );
      cleanup.push(() => b.close());
      return b;
    };
    const strict = await bridge('strict', [`bridge_cafile ${dir}/server.crt`]);
    const lax = await bridge('lax', [`bridge_cafile ${dir}/server.crt`, 'bridge_insecure true']);
    const untrusted = await bridge('untrusted', [`bridge_cafile ${dir}/other.crt`, 'bridge_insecure true']);
    await lax.waitLog((l) => l.message === 'bridge connected');
    const nameFail = await strict.waitLog((l) => l.message === 'bridge connect failed');
    expect(String(nameFail.fields?.reason)).toMatch(/altname|does not match|ERR_TLS_CERT_ALTNAME_INVALID/i);
    const chainFail = await untrusted.waitLog((l) => l.message === 'bridge connect failed');
    expect(String(chainFail.fields?.reason)).toMatch(/self.signed|unable to verify|certificate/i);
    expect(untrusted.bridges.stats()[0].connects).toBe(0);
    // What goes over the lax bridge arrives.
    const local = await Recorder.open(lax.port, []);
    cleanup.push(() => local.end());
    const up = await Recorder.open(m.port, ['x/#']);
    cleanup.push(() => up.end());
    await local.client.publish('x/1', 'over-tls', { qos: 1 });
    await up.until(() => up.on('x/1').length === 1, 'x/1 over the bridge_insecure bridge');
  }, 30_000);
});
