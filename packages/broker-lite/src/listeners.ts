/**
 * Listeners: plain TCP, TLS, and WebSocket (over either), each handing its sockets to the
 * broker with TCP_NODELAY set: MQTT packets are small and latency matters more than packing.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Broker } from './broker.ts';
import type { ListenerInfo } from './connection.ts';
import type { ListenerOptions } from './options.ts';

export interface BoundListener {
  address: { port: number; host: string; protocol: 'mqtt' | 'websockets' };
  close(): Promise<void>;
}

export async function startListener(b: Broker, opts: ListenerOptions): Promise<BoundListener> {
  const info: ListenerInfo = {
    protocol: opts.protocol,
    tls: opts.tls !== undefined,
    useIdentityAsUsername: opts.tls?.useIdentityAsUsername === true,
  };
  const t = opts.tls;
  const tlsOptions: tls.TlsOptions | undefined =
    t === undefined
      ? undefined
      : {
          cert: t.cert,
          key: t.key,
          ca: t.ca,
          requestCert: t.requireCertificate || t.useIdentityAsUsername,
          rejectUnauthorized: t.requireCertificate,
        };
  let server: net.Server;
  if (opts.protocol === 'websockets') {
    // ws and the HTTP stack under it cost ~4 MB of RSS: loaded only for a WebSocket listener.
    const { createWebSocketServer } = await import('./ws-listener.ts');
    server = createWebSocketServer(b, info, tlsOptions, commonName);
  } else if (tlsOptions !== undefined) {
    server = tls.createServer(tlsOptions, (socket) => {
      socket.setNoDelay(true);
      b.accept(socket, info, undefined, commonName(socket));
    });
  } else {
    server = net.createServer((socket) => {
      socket.setNoDelay(true);
      b.accept(socket, info);
    });
  }
  if (tlsOptions !== undefined)
    server.on('tlsClientError', (err) => b.log('notice', 'TLS handshake failed', { error: err.message }));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => b.log('error', 'listener error', { error: err.message }));
  const addr = server.address() as net.AddressInfo;
  return {
    address: { port: addr.port, host: addr.address, protocol: opts.protocol },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
      }),
  };
}

function commonName(socket: net.Socket): string | undefined {
  if (!(socket instanceof tls.TLSSocket)) return undefined;
  const cert = socket.getPeerCertificate();
  if (cert === null || typeof cert !== 'object' || !socket.authorized) return undefined;
  const cn = cert.subject?.CN;
  return Array.isArray(cn) ? cn[0] : cn;
}
