/**
 * A broker built the way the CLI builds it (mosquitto.conf text -> parseConfig ->
 * buildBrokerOptions: password file, ACL file, TLS files read from disk), on ephemeral loopback
 * ports, and a raw MQTT client over TLS.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import type { ConnackPacket, ConnectPacket } from '@mqtt-edge/codec';
import { parseConfig } from '../../src/config.ts';
import { buildBrokerOptions } from '../../src/config-build.ts';
import { Broker, type BrokerOptions } from '../../src/index.ts';
import { type LogLine, RawClient } from './raw-client.ts';

export interface ConfiguredBroker {
  broker: Broker;
  /** The real port of each listener, in the order of the file. */
  ports: number[];
  logs: LogLine[];
  close(): Promise<void>;
}

/** Writes `text` as `dir/mosquitto.conf` (relative paths in it are relative to `dir`) and starts it. */
export async function startConfigured(
  dir: string,
  text: string,
  overrides: Partial<BrokerOptions> = {},
): Promise<ConfiguredBroker> {
  const file = join(dir, 'mosquitto.conf');
  writeFileSync(file, text);
  const logs: LogLine[] = [];
  const logger: BrokerOptions['logger'] = {
    log: (level, message, fields) => logs.push({ level, message, fields }),
  };
  const { options } = await buildBrokerOptions(parseConfig(text, file), logger);
  const broker = new Broker({ ...options, sysInterval: 0, authFailureDelayMs: 0, ...overrides });
  await broker.listen();
  return { broker, ports: broker.addresses.map((a) => a.port), logs, close: () => broker.close() };
}

export interface TlsClientOptions {
  ca: string;
  /** PEM certificate and key the client presents; none when left out. */
  cert?: string;
  key?: string;
}

/**
 * Opens TLS to 127.0.0.1:`port` (the server certificate is checked for `localhost`), sends
 * CONNECT and returns the CONNACK, or `null` when the connection ends without one (a refused
 * handshake, or a close).
 */
export async function tlsConnect(
  port: number,
  options: TlsClientOptions,
  connect: Partial<ConnectPacket>,
): Promise<{ client: RawClient; connack: ConnackPacket | null }> {
  const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...options });
  const up = await new Promise<boolean>((resolve) => {
    socket.once('secureConnect', () => resolve(true));
    socket.once('error', () => resolve(false));
  });
  socket.on('error', () => {});
  const client = RawClient.over(socket);
  if (!up) {
    socket.destroy();
    return { client, connack: null };
  }
  try {
    return { client, connack: await client.handshake(connect) };
  } catch (err) {
    // TLS 1.3: the server checks the client's certificate after the client's handshake is done,
    // so a refused certificate shows up as a close (or an alert) after secureConnect.
    if (/connection closed|got close/.test(String(err)) || client.isClosed) return { client, connack: null };
    throw err;
  }
}
