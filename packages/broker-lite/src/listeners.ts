/**
 * Listeners: plain TCP, TLS, and WebSocket (over either), each handing its sockets to the
 * broker with TCP_NODELAY set: MQTT packets are small and latency matters more than packing.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Broker } from './broker.ts';
import { peerCommonName, peerSubject } from './cert-identity.ts';
import type { AcceptOptions, ListenerInfo } from './connection.ts';
import type { RequestHandler } from './http-files.ts';
import type { ListenerOptions, TlsOptions } from './options.ts';
import { holdPending } from './pending-sockets.ts';

export interface BoundListener {
  address: { port: number; host: string; protocol: 'mqtt' | 'websockets' };
  close(): Promise<void>;
  /**
   * TLS listeners: a new certificate, key and CA (a renewal) for the handshakes from now on;
   * connections already up keep theirs. Throws (and changes nothing) when Node refuses them.
   */
  setSecureContext?(files: TlsFiles): void;
}

/** A listener's PEM texts. */
export type TlsFiles = Pick<TlsOptions, 'cert' | 'key' | 'ca'>;

/** Binds `server`; rejects with the bind error (a port in use), which is then no longer listened for. */
export function bindServer(server: net.Server, port: number, host: string | undefined): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

export async function startListener(b: Broker, opts: ListenerOptions): Promise<BoundListener> {
  const info: ListenerInfo = {
    protocol: opts.protocol,
    tls: opts.tls !== undefined,
    useIdentityAsUsername: opts.tls?.useIdentityAsUsername === true,
    useSubjectAsUsername: opts.tls?.useSubjectAsUsername === true,
    useUsernameAsClientid: opts.useUsernameAsClientid === true,
  };
  if (opts.security !== undefined) info.security = opts.security;
  // The subject is printed only where it is the user name (use_identity_as_username wins).
  const subjectOf = (socket: net.Socket): AcceptOptions | undefined =>
    info.useSubjectAsUsername && !info.useIdentityAsUsername
      ? { certificateSubject: peerSubject(socket) }
      : undefined;
  const t = opts.tls;
  const tlsOptions: tls.TlsOptions | undefined =
    t === undefined
      ? undefined
      : {
          cert: t.cert,
          key: t.key,
          ca: t.ca,
          requestCert: t.requireCertificate || t.useIdentityAsUsername || t.useSubjectAsUsername === true,
          rejectUnauthorized: t.requireCertificate,
        };
  let server: net.Server;
  if (opts.protocol === 'websockets') {
    // ws and the HTTP stack under it cost ~4 MB of RSS: loaded only for a WebSocket listener.
    const { createWebSocketServer } = await import('./ws-listener.ts');
    let onRequest: RequestHandler | undefined;
    if (opts.httpDir !== undefined || opts.statusPage === true) {
      const { createHttpHandler } = await import('./http-files.ts');
      onRequest = await createHttpHandler(b, opts);
    }
    server = createWebSocketServer(b, info, tlsOptions, subjectOf, onRequest);
  } else if (tlsOptions !== undefined) {
    server = tls.createServer(tlsOptions, (socket) => {
      b.pendingSockets.upgraded(socket);
      socket.setNoDelay(true);
      b.accept(socket, info, undefined, peerCommonName(socket), subjectOf(socket));
    });
  } else {
    server = net.createServer((socket) => {
      socket.setNoDelay(true);
      b.accept(socket, info);
    });
  }
  // A TLS handshake is a connection's cost before it is one (Node would wait 120 s for it).
  if (tlsOptions !== undefined && opts.protocol === 'mqtt') server.on('connection', (s) => holdPending(b, s));
  if (tlsOptions !== undefined)
    server.on('tlsClientError', (err) => b.log('notice', 'TLS handshake failed', { error: err.message }));
  await bindServer(server, opts.port, opts.host);
  server.on('error', (err) => b.log('error', 'listener error', { error: err.message }));
  const addr = server.address() as net.AddressInfo;
  const bound: BoundListener = {
    address: { port: addr.port, host: addr.address, protocol: opts.protocol },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
      }),
  };
  // A TLS MQTT listener is a tls.Server, a TLS WebSocket one an https.Server (a tls.Server too).
  if (tlsOptions !== undefined && server instanceof tls.Server) {
    const secure = server;
    bound.setSecureContext = (files) => {
      const next: tls.SecureContextOptions = { cert: files.cert, key: files.key };
      if (files.ca !== undefined) next.ca = files.ca;
      secure.setSecureContext(next);
    };
  }
  return bound;
}
