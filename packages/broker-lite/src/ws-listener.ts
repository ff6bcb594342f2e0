/**
 * WebSocket listeners: an HTTP(S) server whose answer is the upgrade to MQTT over WebSocket
 * (and, with http_dir or status_page, files: http-files.ts). What reaches the broker before CONNECT is bounded here, where the MQTT parser
 * cannot see it: sockets waiting to upgrade (counted, timed out, ended on close), the HTTP
 * request (Node's header limit), the subprotocol, frame sizes (the broker's packet limit) and
 * the bytes a client may send before its CONNECT is read (frames and pings included).
 */
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type tls from 'node:tls';
import { type ServerOptions, WebSocketServer } from 'ws';
import type { Broker } from './broker.ts';
import { peerCommonName } from './cert-identity.ts';
import { ConnState } from './conn-state.ts';
import type { AcceptOptions, Connection, ListenerInfo } from './connection.ts';
import type { RequestHandler } from './http-files.ts';
import { holdPending } from './pending-sockets.ts';
import { WebSocketStream } from './ws-stream.ts';

/**
 * Bytes a WebSocket client may send between the upgrade and its CONNECT being read, frame
 * headers and control frames included: room for the largest 3.1.1 CONNECT (five 64 KiB
 * fields, 327,700 bytes) framed any sane way. ws holds a frame until it is complete, so this is
 * also what one pre-CONNECT frame can make the broker buffer. Lower when the largest packet
 * accepted before CONNACK (max_unauthenticated_packet_size, 256 KiB by default) is.
 */
export const WS_BYTES_BEFORE_CONNECT = 1 << 20;
/** Frame headers on top of a packet limit: a whole packet in 1-byte frames would be 7 times its size. */
const FRAMING_ALLOWANCE = 64 * 1024;
/** Subprotocols of MQTT over WebSocket (5.0 / 3.1.1, and 3.1's name), as Mosquitto offers them. */
const SUBPROTOCOLS = ['mqtt', 'mqttv3.1'];
/**
 * How long ws waits for the peer's close frame after sending its own: as long as
 * Connection.close() gives a peer to read what it was sent (ws's default is 30 s).
 */
const CLOSE_TIMEOUT_MS = 2000;

export function createWebSocketServer(
  b: Broker,
  info: ListenerInfo,
  tlsOptions: tls.TlsOptions | undefined,
  /** The certificate subject, where the listener makes it the user name. */
  subjectOf: (socket: net.Socket) => AcceptOptions | undefined,
  /** Requests that are not an upgrade (http_dir, status_page); default: 426 and closed. */
  onRequest: RequestHandler = notAnUpgrade,
): net.Server {
  const server =
    tlsOptions === undefined ? http.createServer(onRequest) : https.createServer(tlsOptions, onRequest);
  // The raw TCP socket, before any TLS handshake or HTTP byte.
  server.on('connection', (socket: net.Socket) => holdPending(b, socket));
  // closeTimeout is ws 8.23's (package.json asks for it); @types/ws 8.18 does not list it yet.
  const options: ServerOptions & { closeTimeout: number } = {
    noServer: true,
    clientTracking: false,
    // A message (all fragments of a frame) larger than the largest packet is refused (1009)
    // from its header, before its payload is buffered.
    maxPayload: b.maxPacketIn,
    closeTimeout: CLOSE_TIMEOUT_MS,
    handleProtocols: (offered) => SUBPROTOCOLS.find((p) => offered.has(p)) ?? false,
    verifyClient: (request, done) => {
      const offered = request.req.headers['sec-websocket-protocol'];
      if (offered === undefined || offersMqtt(offered)) done(true);
      else done(false, 400, 'MQTT over WebSocket needs the subprotocol mqtt');
    },
  };
  const wss = new WebSocketServer(options);
  const beforeConnect = Math.min(WS_BYTES_BEFORE_CONNECT, b.maxPacketUnauthenticated + FRAMING_ALLOWANCE);
  server.on('upgrade', (req: http.IncomingMessage, duplex: Duplex, head: Buffer) => {
    // http(s) servers hand over the socket they read: net.Socket, or tls.TLSSocket.
    const socket = duplex as net.Socket;
    wss.handleUpgrade(req, socket, head, (ws) => {
      b.pendingSockets.upgraded(socket);
      socket.setNoDelay(true);
      // The peer's address is read from the socket when a log line wants it (Connection.remote).
      const stream = new WebSocketStream(ws, socket);
      const conn = b.accept(stream, info, undefined, peerCommonName(socket), subjectOf(socket));
      if (conn !== undefined) limitBeforeConnect(b, socket, conn, beforeConnect);
    });
  });
  return server;
}

/**
 * Closes the socket once more than `limit` bytes arrived without a CONNECT having been read,
 * and until the CONNACK charges every socket byte to the unauthenticated budget in place of
 * the connection (ws may hold them in an unfinished frame the connection has not seen).
 * Counted after ws and the connection handled each chunk, so a chunk that carries the CONNECT
 * is not held against the limit; the counter goes away with the first chunk after CONNACK.
 */
function limitBeforeConnect(b: Broker, socket: net.Socket, conn: Connection, limit: number): void {
  let received = 0;
  conn.socketCharged = true;
  const count = (chunk: Buffer): void => {
    if (conn.state === ConnState.Connected || conn.ending) {
      socket.off('data', count);
      return;
    }
    if (!b.unauthenticated.charge(conn, chunk.length)) {
      socket.off('data', count);
      return;
    }
    if (conn.state !== ConnState.AwaitConnect) return;
    received += chunk.length;
    if (received <= limit) return;
    socket.off('data', count);
    b.log('notice', 'WebSocket client sent too much before CONNECT, closing', {
      remote: conn.remote,
      bytes: received,
      limit,
    });
    socket.destroy();
  };
  socket.on('data', count);
}

function offersMqtt(header: string): boolean {
  for (const p of header.split(',')) if (SUBPROTOCOLS.includes(p.trim())) return true;
  return false;
}

/** Any request that is not an upgrade: told so, and not kept alive for more requests. */
function notAnUpgrade(_req: http.IncomingMessage, res: http.ServerResponse): void {
  res.writeHead(426, { 'content-type': 'text/plain', connection: 'close' });
  res.end('MQTT over WebSocket only\n');
}
