import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HAS_OPENSSL, serverAndClientPki, type TestPki } from '../../../test/helpers/tls.ts';
import { Broker } from '../src/index.ts';

if (!HAS_OPENSSL) console.warn('openssl not installed: TLS listener tests skipped');

describe('WebSocket listener', () => {
  let broker: Broker;
  beforeAll(async () => {
    broker = new Broker({
      listeners: [
        { port: 0, host: '127.0.0.1', protocol: 'mqtt' },
        { port: 0, host: '127.0.0.1', protocol: 'websockets' },
      ],
      sysInterval: 0,
    });
    await broker.listen();
  });
  afterAll(() => broker.close());

  it('serves MQTT over WebSocket next to TCP, one message crossing both', async () => {
    const [tcp, ws] = broker.addresses;
    expect(ws.protocol).toBe('websockets');
    const sub = await mqtt.connectAsync(`ws://127.0.0.1:${ws.port}`, { protocolVersion: 5 });
    await sub.subscribeAsync('ws/t', { qos: 1 });
    const got = new Promise<string>((r) => sub.on('message', (_t, p) => r(p.toString())));
    const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${tcp.port}`);
    await pub.publishAsync('ws/t', 'over ws', { qos: 1 });
    expect(await got).toBe('over ws');
    await pub.endAsync();
    await sub.endAsync();
  });
});

describe.skipIf(!HAS_OPENSSL)('TLS listener', () => {
  let pki: TestPki;
  let broker: Broker;
  const pem = (name: string) => pki.read(name);
  beforeAll(async () => {
    pki = serverAndClientPki('broker-lite-tls-', 'device-7');
    const seen: string[] = [];
    broker = new Broker({
      listeners: [
        {
          port: 0,
          host: '127.0.0.1',
          protocol: 'mqtt',
          tls: {
            cert: pem('server.crt'),
            key: pem('server.key'),
            requireCertificate: false,
            useIdentityAsUsername: false,
          },
        },
        {
          port: 0,
          host: '127.0.0.1',
          protocol: 'mqtt',
          tls: {
            cert: pem('server.crt'),
            key: pem('server.key'),
            ca: pem('ca.crt'),
            requireCertificate: true,
            useIdentityAsUsername: true,
          },
        },
        {
          port: 0,
          host: '127.0.0.1',
          protocol: 'websockets',
          tls: {
            cert: pem('server.crt'),
            key: pem('server.key'),
            requireCertificate: false,
            useIdentityAsUsername: false,
          },
        },
      ],
      sysInterval: 0,
      accessControl: {
        allowed: (_a, client, topic) => {
          seen.push(`${client.username}:${topic}`);
          return client.username === undefined || topic.startsWith(`${client.username}/`);
        },
      },
    });
    await broker.listen();
  });
  afterAll(async () => {
    await broker.close();
    pki?.remove();
  });

  it('accepts TLS clients that trust the CA', async () => {
    const c = await mqtt.connectAsync(`mqtts://127.0.0.1:${broker.addresses[0].port}`, { ca: pem('ca.crt') });
    expect(c.connected).toBe(true);
    await c.endAsync();
  });

  it('serves MQTT over WebSocket over TLS (wss)', async () => {
    const c = await mqtt.connectAsync(`wss://127.0.0.1:${broker.addresses[2].port}`, { ca: pem('ca.crt') });
    expect(c.connected).toBe(true);
    // issue 12.4: the TCP socket counted while it upgraded is released by its TLS socket's upgrade
    expect(broker.pendingSockets.size).toBe(0);
    expect(broker.connections.size).toBe(1);
    await c.endAsync();
    await expect.poll(() => broker.connections.size).toBe(0);
  });

  it('require_certificate: a client without a certificate is refused; with one, its CN is the user name', async () => {
    const port = broker.addresses[1].port;
    await expect(
      mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, {
        ca: pem('ca.crt'),
        reconnectPeriod: 0,
        connectTimeout: 2000,
      }),
    ).rejects.toBeTruthy();
    const c = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, {
      ca: pem('ca.crt'),
      cert: pem('client.crt'),
      key: pem('client.key'),
    });
    // the ACL sees user name 'device-7' (the certificate's CN)
    const granted = await c.subscribeAsync('device-7/cmd', { qos: 0 });
    expect(granted[0].qos).toBe(0);
    await expect(c.subscribeAsync('other/cmd', { qos: 0 })).rejects.toThrow(/Unspecified error/);
    await c.endAsync();
  });
});
