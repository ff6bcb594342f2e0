/**
 * Bridges between two broker-lites in this process: the bridge's internal connection is outside
 * a password file and an ACL that refuse everyone else (and cannot be impersonated), drop counters and policies, start_type
 * once, restart_timeout backoff, and hostile upstreams (garbage, a refusal, a closed socket).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@mqtt-edge/client';
import { afterEach, describe, expect, it } from 'vitest';
import { type BridgedBroker, eventually, Recorder, startBridged } from '../../../test/bridge-helpers.ts';
import { startBridges } from '../src/bridge.ts';
import { Broker } from '../src/broker.ts';
import { parseConfig } from '../src/config.ts';

const closers: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of closers.reverse()) await c();
  closers.length = 0;
});

async function upstream(): Promise<BridgedBroker> {
  const b = await startBridged('');
  closers.push(() => b.close());
  return b;
}

async function gateway(lines: string[]): Promise<BridgedBroker> {
  const b = await startBridged(lines.join('\n'));
  closers.push(() => b.close());
  return b;
}

/** A TCP server that answers each connection with `reply` (or closes it at once when undefined). */
async function hostile(reply: Uint8Array | undefined): Promise<number> {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', () => {
      if (reply === undefined) s.destroy();
      else s.end(reply);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as net.AddressInfo).port;
}

describe('bridge on a broker with a password file and an ACL', () => {
  it('logs in internally, bypassing both, while other clients stay refused', async () => {
    const up = await upstream();
    const dir = mkdtempSync(join(tmpdir(), 'bl-bridge-sec-'));
    closers.push(() => rmSync(dir, { recursive: true, force: true }));
    const cfg = parseConfig(
      `listener 0 127.0.0.1\nconnection up\naddress 127.0.0.1:${up.port}\ntopic data/# both 1\nrestart_timeout 1\ncleansession true\n`,
      join(dir, 'b.conf'),
    );
    const denied: string[] = [];
    const askedAbout: string[] = [];
    const broker = new Broker({
      listeners: [{ port: 0, host: '127.0.0.1', protocol: 'mqtt' }],
      sysInterval: 0,
      allowAnonymous: false,
      authFailureDelayMs: 0,
      // Only alice/secret gets in, and alice may only publish to data/#, read nothing.
      authenticator: {
        authenticate: ({ clientId, username, password }) => {
          askedAbout.push(clientId);
          return (
            username === 'alice' && password !== undefined && Buffer.from(password).toString() === 'secret'
          );
        },
      },
      accessControl: {
        allowed: (access, client, topic) => {
          askedAbout.push(client.clientId);
          const ok = client.username === 'alice' && access === 'write' && topic.startsWith('data/');
          if (!ok) denied.push(`${client.username}:${access}:${topic}`);
          return ok;
        },
      },
    });
    await broker.listen();
    const bridges = await startBridges(broker, cfg.bridges, { queueDir: (n) => join(dir, n) });
    closers.push(async () => {
      await bridges.close();
      await broker.close();
    });
    const port = broker.addresses[0].port;
    const upRec = await Recorder.open(up.port, ['data/#']);
    closers.push(() => upRec.end());
    const alice = connect({
      host: '127.0.0.1',
      port,
      username: 'alice',
      password: 'secret',
      reconnect: false,
    });
    closers.push(() => alice.end({ force: true }));
    await new Promise<void>((r) => alice.once('connect', () => r()));
    await eventually(() => bridges.stats()[0].state === 'connected', 'bridge connected');
    await alice.publish('data/x', 'from-alice', { qos: 1 });
    await upRec.until(() => upRec.on('data/x').length === 1, 'data/x upstream');
    // Incoming: published here by the bridge although the ACL refuses everyone but alice.
    const before = broker.stats().publishReceived;
    await upRec.client.publish('data/in', 'from-up', { qos: 1 });
    await eventually(() => broker.stats().publishReceived > before, 'the incoming message published here');
    // Neither check was ever asked about the bridge's local session.
    const localId = cfg.bridges[0].localClientId;
    expect(askedAbout.length).toBeGreaterThan(0);
    expect(askedAbout.filter((id) => id === localId)).toEqual([]);
    expect(denied.filter((d) => d.startsWith('undefined:'))).toEqual([]);

    // A client that claims the bridge's user name (or any made-up $bridge/ name) is refused.
    const user = `$bridge/up/${'0'.repeat(32)}`;
    const intruder = connect({ host: '127.0.0.1', port, username: user, password: 'x', reconnect: false });
    const err = await new Promise<Error>((r) => intruder.once('error', r));
    expect(err.message).toMatch(/refused/);
    await intruder.end({ force: true });

    // Valid credentials and the bridge's client id: refused, and the bridge stays up.
    const thief = connect({
      host: '127.0.0.1',
      port,
      clientId: localId,
      username: 'alice',
      password: 'secret',
      reconnect: false,
    });
    const refused = await new Promise<Error>((r) => thief.once('error', r));
    expect(refused.message).toMatch(/identifier rejected/);
    await thief.end({ force: true });
    await alice.publish('data/after', 'still-bridged', { qos: 1 });
    await upRec.until(() => upRec.on('data/after').length === 1, 'data/after upstream');
    expect(bridges.stats()[0].connects).toBe(1);
  }, 20_000);
});

describe('an in-only bridge', () => {
  it('publishes what it receives here although it subscribes to nothing here', async () => {
    const up = await upstream();
    const gw = await gateway([
      'connection in-only',
      `address 127.0.0.1:${up.port}`,
      'topic cmd/# in 1 local/ ""',
      'restart_timeout 1',
      'cleansession true',
    ]);
    await gw.waitLog((l) => l.message === 'bridge connected');
    await gw.waitLog((l) => l.message === 'bridge local session up');
    const local = await Recorder.open(gw.port, ['local/#']);
    closers.push(() => local.end());
    const upc = await Recorder.open(up.port, []);
    closers.push(() => upc.end());
    await upc.client.publish('cmd/go', 'now', { qos: 1 });
    await local.until(() => local.on('local/cmd/go').length === 1, 'local/cmd/go');
  });
});

describe('bridge counters and policies', () => {
  it('drops QoS 0 while down and oversize messages, counted, without holding up local traffic', async () => {
    const port = await hostile(undefined);
    const gw = await gateway([
      'connection down',
      `address 127.0.0.1:${port}`,
      'topic q/# out 1',
      'restart_timeout 1',
      'bridge_max_packet_size 100',
    ]);
    const local = await Recorder.open(gw.port, ['q/#']);
    closers.push(() => local.end());
    await local.client.publish('q/zero', 'x', { qos: 0 });
    await local.client.publish('q/big', new Uint8Array(200), { qos: 1 });
    await local.client.publish('q/ok', 'y', { qos: 1 });
    await local.until(() => local.got.length === 3, 'local deliveries');
    await gw.waitLog((l) => l.message === 'bridge dropped messages');
    const s = gw.bridges.stats()[0];
    expect(s.outDropped).toBe(2);
    expect(s.queue.count).toBe(1);
    expect(s.state).not.toBe('connected');
    // The same counters, retained under $SYS/broker/connection/NAME/ (each sys_interval).
    gw.bridges.list[0].publishSys();
    const sys = await Recorder.open(gw.port, ['$SYS/broker/connection/down/#']);
    closers.push(() => sys.end());
    await sys.until(() => sys.got.length >= 9, 'retained bridge counters');
    const v = (name: string) => sys.on(`$SYS/broker/connection/down/${name}`)[0]?.payload;
    expect(v('state')).toBe('0');
    expect(v('messages/queued')).toBe('1');
    expect(v('messages/dropped')).toBe('2');
    expect(v('last_error')).not.toBe('');
  });

  it('reject-new: a full queue refuses new messages, counted, and local publishers are still acknowledged', async () => {
    const port = await hostile(undefined);
    const gw = await gateway([
      'connection full',
      `address 127.0.0.1:${port}`,
      'topic f/# out 1',
      'restart_timeout 1',
      'bridge_queue_max_messages 5',
      'bridge_queue_drop_policy reject-new',
    ]);
    const pub = await Recorder.open(gw.port, ['f/#']);
    closers.push(() => pub.end());
    const acks = [];
    for (let i = 0; i < 20; i++) acks.push(pub.client.publish('f/x', String(i), { qos: 1 }));
    await Promise.all(acks);
    await pub.until(() => pub.got.length === 20, 'local deliveries');
    await eventually(() => gw.bridges.stats()[0].outDropped >= 15, '15 refused');
    const s = gw.bridges.stats()[0];
    expect(s.queue.count).toBe(5);
    expect(s.outDropped).toBe(15);
    expect(s.queue.rejectedNew).toBe(15);
  });
});

describe('bridge to a hostile or refusing upstream', () => {
  it('garbage in answer to CONNECT: logged with the reason, retried, no crash', async () => {
    const port = await hostile(new Uint8Array([0x20, 0x7f, 1, 2, 3, 0xff, 0xff, 0xff, 0xff, 0x0f]));
    const gw = await gateway([
      'connection junk',
      `address 127.0.0.1:${port}`,
      'topic j/# out 1',
      'restart_timeout 1 4',
    ]);
    const l = await gw.waitLog((x) => x.message === 'bridge connect failed');
    expect(String(l.fields?.reason)).not.toBe('connection closed');
    // Mosquitto 2's backoff with the test's jitter (0.5): min(cap, base + 0.5 * (3 x base - base)).
    expect(l.fields?.retryInMs).toBe(2000);
    expect(gw.bridges.stats()[0].connectFailures).toBe(1);
  });

  it('a CONNACK refusal (not authorised) is logged and retried', async () => {
    // 3.1.1 CONNACK, return code 5 (not authorised).
    const port = await hostile(new Uint8Array([0x20, 0x02, 0x00, 0x05]));
    const gw = await gateway([
      'connection refused',
      `address 127.0.0.1:${port}`,
      'topic r/# out 1',
      'restart_timeout 1',
      'try_private false',
    ]);
    const l = await gw.waitLog((x) => x.message === 'bridge connect failed');
    expect(String(l.fields?.reason)).toMatch(/not authori[sz]ed/i);
  });

  it('a bridge that cannot connect keeps one client and its listeners across attempts', async () => {
    const port = await hostile(undefined);
    const gw = await gateway([
      'connection loop',
      `address 127.0.0.1:${port}`,
      'topic l/# out 1',
      'restart_timeout 1',
    ]);
    const bridge = gw.bridges.list[0] as unknown as { client: import('@mqtt-edge/client').MqttClient };
    await gw.waitLog((x) => x.message === 'bridge connect failed');
    const client = bridge.client;
    const listeners = client.eventNames().map((e) => client.listenerCount(e));
    // Two more attempts (restart_timeout 1).
    await eventually(() => gw.bridges.stats()[0].connectFailures >= 3, 'three failures', 8000);
    expect(bridge.client).toBe(client);
    expect(client.eventNames().map((e) => client.listenerCount(e))).toEqual(listeners);
  }, 15_000);

  it('start_type once: not restarted after the first failure', async () => {
    const port = await hostile(undefined);
    const gw = await gateway([
      'connection one',
      `address 127.0.0.1:${port}`,
      'topic o/# out 1',
      'start_type once',
    ]);
    await gw.waitLog((x) => /start_type once/.test(x.message));
    expect(gw.bridges.stats()[0].state).toBe('stopped');
    expect(gw.logs.filter((x) => x.message === 'bridge connect failed')).toEqual([]);
  });
});

describe('start_type lazy', () => {
  it('tries nothing up to the threshold; past it retries while the backlog stays above it', async () => {
    const port = await hostile(undefined);
    const gw = await gateway([
      'connection lz',
      `address 127.0.0.1:${port}`,
      'topic lz/# out 1',
      'start_type lazy',
      'threshold 2',
      'restart_timeout 1',
    ]);
    const bridge = gw.bridges.list[0];
    const c = connect({ host: '127.0.0.1', port: gw.port, reconnect: false });
    closers.push(() => c.end());
    await new Promise<void>((r) => c.once('connect', () => r()));
    expect(bridge.state).toBe('idle');
    await c.publish('lz/a', '1', { qos: 1 });
    await c.publish('lz/a', '2', { qos: 1 });
    await eventually(() => bridge.stats().queue.count === 2, 'two queued');
    expect(bridge.state).toBe('idle');
    expect(bridge.stats().connectFailures).toBe(0);
    await c.publish('lz/a', '3', { qos: 1 });
    await gw.waitLog((x) => x.message === 'bridge connect failed');
    // Three queued > threshold 2: not idle, the next attempt is scheduled.
    expect(bridge.state === 'waiting' || bridge.state === 'connecting').toBe(true);
    expect(bridge.stats().queue.count).toBe(3);
  });

  it('between broker-lites: connects past the threshold, drains, goes idle after idle_timeout', async () => {
    const up = await upstream();
    const gw = await gateway([
      'connection lz',
      `address 127.0.0.1:${up.port}`,
      'topic lz/# out 1',
      'start_type lazy',
      'threshold 1',
      'idle_timeout 1',
      'restart_timeout 1',
      'cleansession true',
    ]);
    const bridge = gw.bridges.list[0];
    const there = await Recorder.open(up.port, ['lz/#']);
    closers.push(() => there.end());
    const c = connect({ host: '127.0.0.1', port: gw.port, reconnect: false });
    closers.push(() => c.end());
    await new Promise<void>((r) => c.once('connect', () => r()));
    await c.publish('lz/a', 'a', { qos: 1 });
    await eventually(() => bridge.stats().queue.count === 1, 'one queued');
    expect(bridge.state).toBe('idle');
    await c.publish('lz/a', 'b', { qos: 1 });
    await there.until(() => there.on('lz/a').length >= 2, 'both upstream');
    expect(there.on('lz/a').map((x) => x.payload)).toEqual(['a', 'b']);
    await gw.waitLog((x) => x.message.startsWith('bridge idle'), 5000);
    expect(bridge.state).toBe('idle');
    expect(bridge.stats().queue.count).toBe(0);
  });
});
