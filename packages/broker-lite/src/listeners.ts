/**
 * Listeners: plain TCP, TLS, and WebSocket (over either), each handing its sockets to the
 * broker with TCP_NODELAY set: MQTT packets are small and latency matters more than packing.
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { createWebSocketStream, WebSocketServer } from 'ws';
import type { Broker } from './broker.ts';
import { peerCommonName, peerSubject } from './cert-identity.ts';
import type { AcceptOptions, ListenerInfo } from './connection.ts';
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
    useSubjectAsUsername: opts.tls?.useSubjectAsUsername === true,
    useUsernameAsClientid: opts.useUsernameAsClientid === true,
  };
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
  let wss: WebSocketServer | null = null;
  if (opts.protocol === 'websockets') {
    const httpServer =
      tlsOptions === undefined ? http.createServer(notFound) : https.createServer(tlsOptions, notFound);
    wss = new WebSocketServer({
      server: httpServer,
      handleProtocols: (protocols) =>
        protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false,
      maxPayload: 268_435_460,
    });
    wss.on('connection', (ws, req) => {
      req.socket.setNoDelay(true);
      const stream = createWebSocketStream(ws);
      b.accept(
        stream,
        info,
        `${req.socket.remoteAddress}:${req.socket.remotePort}`,
        peerCommonName(req.socket),
        subjectOf(req.socket),
      );
    });
    server = httpServer;
  } else if (tlsOptions !== undefined) {
    server = tls.createServer(tlsOptions, (socket) => {
      socket.setNoDelay(true);
      b.accept(socket, info, undefined, peerCommonName(socket), subjectOf(socket));
    });
    server.on('tlsClientError', (err) => b.log('notice', 'TLS handshake failed', { error: err.message }));
  } else {
    server = net.createServer((socket) => {
      socket.setNoDelay(true);
      b.accept(socket, info);
    });
  }
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
        wss?.close();
        server.close(() => resolve());
      }),
  };
}

function notFound(_req: http.IncomingMessage, res: http.ServerResponse): void {
  res.writeHead(426, { 'content-type': 'text/plain' });
  res.end('MQTT over WebSocket only\n');
}
