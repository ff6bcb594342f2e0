/**
 * WebSocket listeners: an HTTP(S) server whose answer is the upgrade to MQTT over WebSocket
 * (and, with http_dir or status_page, files: http-files.ts). What reaches the broker before CONNECT is bounded here, where the MQTT parser
 * cannot see it: sockets waiting to upgrade (counted, timed out, ended on close), the HTTP
 * request (Node's header limit), the subprotocol, frame sizes (the broker's packet limit) and
 * the bytes a client may send before its CONNECT is read (frames and pings included).
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type tls from 'node:tls';
import type { Broker } from './broker.ts';
import { peerCommonName } from './cert-identity.ts';
import { ConnState } from './conn-state.ts';
import type { AcceptOptions, Connection, ListenerInfo } from './connection.ts';
import type { RequestHandler } from './http-files.ts';
import { holdPending } from './pending-sockets.ts';
import { WebSocketStream, type WsLimits } from './ws-stream.ts';

/**
 * Bytes a WebSocket client may send between the upgrade and its CONNECT being read, frame
 * headers and control frames included: room for the largest 3.1.1 CONNECT (five 64 KiB
 * fields, 327,700 bytes) framed any sane way. Also the largest message (a frame, or all the
 * fragments of one) before the CONNACK. Lower when the largest packet accepted before CONNACK
 * (max_unauthenticated_packet_size, 256 KiB by default) is.
 */
export const WS_BYTES_BEFORE_CONNECT = 1 << 20;
/** Frame headers on top of a packet limit: a whole packet in 1-byte frames would be 7 times its size. */
const FRAMING_ALLOWANCE = 64 * 1024;
/** Subprotocols of MQTT over WebSocket (5.0 / 3.1.1, and 3.1's name), as Mosquitto offers them. */
const SUBPROTOCOLS = ['mqtt', 'mqttv3.1'];
/** RFC 6455 1.3: appended to the client's key for Sec-WebSocket-Accept. */
const ACCEPT_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** A Sec-WebSocket-Key: 16 bytes in base64. */
const KEY = /^[+/0-9A-Za-z]{22}==$/;
/** A token (RFC 7230 3.2.6), as a subprotocol name must be. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

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
  const beforeConnect = Math.min(WS_BYTES_BEFORE_CONNECT, b.maxPacketUnauthenticated + FRAMING_ALLOWANCE);
  // A message larger than the largest packet is refused (1009) from its frame header.
  const limits: WsLimits = { beforeConnack: beforeConnect, afterConnack: b.maxPacketIn };
  server.on('upgrade', (req: http.IncomingMessage, duplex: Duplex, head: Buffer) => {
    // http(s) servers hand over the socket they read: net.Socket, or tls.TLSSocket.
    const socket = duplex as net.Socket;
    const refused = checkUpgrade(req);
    if (refused !== null) {
      refuse(socket, refused);
      return;
    }
    if (socket.destroyed || !socket.writable) return;
    const protocol = chosenProtocol(req.headers['sec-websocket-protocol']);
    const accept = createHash('sha1')
      .update(req.headers['sec-websocket-key'] + ACCEPT_GUID)
      .digest('base64');
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${accept}\r\n` +
        (protocol === undefined ? '' : `Sec-WebSocket-Protocol: ${protocol}\r\n`) +
        '\r\n',
    );
    b.pendingSockets.upgraded(socket);
    socket.setNoDelay(true);
    // Frames the client sent behind its request are read first.
    if (head.length > 0) socket.unshift(head);
    const stream = new WebSocketStream(socket, limits);
    const conn = b.accept(stream, info, undefined, peerCommonName(socket), subjectOf(socket));
    if (conn === undefined) return;
    stream.reader = conn;
    limitBeforeConnect(b, socket, conn, beforeConnect);
  });
  return server;
}

interface Refusal {
  status: number;
  message: string;
  headers?: string;
}

/** What is wrong with an upgrade request (RFC 6455 4.2.1), or null. */
function checkUpgrade(req: http.IncomingMessage): Refusal | null {
  if (req.method !== 'GET') return { status: 405, message: 'Only GET upgrades to a WebSocket' };
  const h = req.headers;
  if (h.upgrade?.toLowerCase() !== 'websocket')
    return { status: 400, message: 'Upgrade: websocket expected' };
  if (h['sec-websocket-version'] !== '13')
    return {
      status: 400,
      message: 'Sec-WebSocket-Version 13 expected',
      headers: 'Sec-WebSocket-Version: 13\r\n',
    };
  const key = h['sec-websocket-key'];
  if (key === undefined || !KEY.test(key.trim()))
    return { status: 400, message: 'Missing or invalid Sec-WebSocket-Key' };
  const offered = h['sec-websocket-protocol'];
  if (offered !== undefined) {
    const names = offered.split(',').map((p) => p.trim());
    if (!names.every((p) => TOKEN.test(p))) return { status: 400, message: 'Invalid Sec-WebSocket-Protocol' };
    if (!names.some((p) => SUBPROTOCOLS.includes(p)))
      return { status: 400, message: 'MQTT over WebSocket needs the subprotocol mqtt' };
  }
  return null;
}

/** The subprotocol answered: the first of ours the client offers (none when it offers none). */
function chosenProtocol(offered: string | undefined): string | undefined {
  if (offered === undefined) return undefined;
  const names = offered.split(',').map((p) => p.trim());
  return SUBPROTOCOLS.find((p) => names.includes(p));
}

/** An HTTP error for a bad upgrade request, then the socket closed. */
function refuse(socket: net.Socket, r: Refusal): void {
  if (socket.writable) {
    socket.end(
      `HTTP/1.1 ${r.status} ${http.STATUS_CODES[r.status]}\r\nConnection: close\r\n` +
        `Content-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(r.message) + 1}\r\n${r.headers ?? ''}\r\n` +
        `${r.message}\n`,
    );
  }
  socket.destroySoon();
}

/**
 * Closes the socket once more than `limit` bytes arrived without a CONNECT having been read,
 * and until the CONNACK charges every socket byte to the unauthenticated budget in place of
 * the connection (frame headers and control frames are bytes the connection never sees).
 * Counted after the WebSocket stream and the connection handled each chunk, so a chunk that carries the CONNECT
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

/** Any request that is not an upgrade: told so, and not kept alive for more requests. */
function notAnUpgrade(_req: http.IncomingMessage, res: http.ServerResponse): void {
  res.writeHead(426, { 'content-type': 'text/plain', connection: 'close' });
  res.end('MQTT over WebSocket only\n');
}
