import net from 'node:net';
import tls from 'node:tls';
import type { Target, TransportOptions } from './target.ts';

/** Who a transport reports to (the client). Methods, not closures: an idle client stays small. */
export interface TransportOwner {
  transportOpen(t: Transport): void;
  transportData(t: Transport, chunk: Uint8Array): void;
  /** Called once, whatever ended the transport. */
  transportClose(t: Transport, error: Error | undefined): void;
}

export interface Transport {
  write(bytes: Uint8Array): void;
  /** Graceful close after pending writes (forced after a grace period). */
  end(): void;
  /** Close now; `error` (if the transport has none yet) is the one transportClose reports. */
  destroy(error?: Error): void;
}

const END_GRACE_MS = 2000;
const TRANSPORT = Symbol('mqtt-edge.transport');
type TaggedSocket = net.Socket & { [TRANSPORT]: SocketTransport };

function tlsOptions(o: TransportOptions, t: Target): tls.ConnectionOptions {
  const opts: tls.ConnectionOptions = { host: t.host, port: t.port };
  if (o.ca !== undefined) opts.ca = o.ca as tls.ConnectionOptions['ca'];
  if (o.cert !== undefined) opts.cert = o.cert as tls.ConnectionOptions['cert'];
  if (o.key !== undefined) opts.key = o.key as tls.ConnectionOptions['key'];
  if (o.passphrase !== undefined) opts.passphrase = o.passphrase;
  if (o.rejectUnauthorized !== undefined) opts.rejectUnauthorized = o.rejectUnauthorized;
  if (o.checkServerIdentity !== undefined) opts.checkServerIdentity = o.checkServerIdentity;
  const servername = o.servername ?? (net.isIP(t.host) === 0 ? t.host : undefined);
  if (servername !== undefined) opts.servername = servername;
  return opts;
}

// Socket listeners shared by every connection: EventEmitter calls them with the socket as
// `this`, and the socket carries its transport.
function onSocketOpen(this: TaggedSocket): void {
  const t = this[TRANSPORT];
  t.owner.transportOpen(t);
}
function onSocketData(this: TaggedSocket, chunk: Uint8Array): void {
  const t = this[TRANSPORT];
  t.owner.transportData(t, chunk);
}
function onSocketError(this: TaggedSocket, err: Error): void {
  this[TRANSPORT].error ??= err;
}
function onSocketClose(this: TaggedSocket): void {
  const t = this[TRANSPORT];
  t.closed = true;
  t.owner.transportClose(t, t.error);
}
function destroySocket(socket: net.Socket): void {
  socket.destroy();
}

class SocketTransport implements Transport {
  error: Error | undefined = undefined;
  closed = false;

  constructor(
    readonly socket: net.Socket,
    openEvent: string,
    readonly owner: TransportOwner,
  ) {
    (socket as TaggedSocket)[TRANSPORT] = this;
    socket.setNoDelay(true);
    socket.on(openEvent, onSocketOpen);
    socket.on('data', onSocketData);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
  }

  write(b: Uint8Array): void {
    if (!this.socket.destroyed) this.socket.write(b);
  }

  end(): void {
    if (this.closed) return;
    this.socket.end();
    setTimeout(destroySocket, END_GRACE_MS, this.socket).unref();
  }

  destroy(error?: Error): void {
    if (error !== undefined) this.error ??= error;
    this.socket.destroy();
  }
}

interface WebSocketLike {
  binaryType: string;
  readyState: number;
  send(data: Uint8Array): void;
  close(code?: number): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: unknown) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}
type WebSocketCtor = new (url: string, protocols: string[], options?: object) => WebSocketLike;

async function webSocketCtor(o: TransportOptions, needsTlsOptions: boolean): Promise<WebSocketCtor> {
  const g = (globalThis as { WebSocket?: WebSocketCtor }).WebSocket;
  if (g !== undefined && o.wsModule !== 'ws' && !needsTlsOptions) return g;
  try {
    const mod = (await import('ws')) as unknown as { WebSocket: WebSocketCtor };
    return mod.WebSocket;
  } catch (err) {
    throw new Error(`ws:// needs a global WebSocket or the optional 'ws' package (${String(err)})`);
  }
}

function webSocketTransport(o: TransportOptions, t: Target, owner: TransportOwner): Transport {
  let ws: WebSocketLike | null = null;
  let done = false;
  let error: Error | undefined;
  let cancelled = false;
  const finish = (err: Error | undefined) => {
    if (done) return;
    done = true;
    owner.transportClose(transport, err);
  };
  const host = net.isIPv6(t.host) ? `[${t.host}]` : t.host;
  const url = `${t.protocol}://${host}:${t.port}${t.path.startsWith('/') ? t.path : `/${t.path}`}`;
  const needsTls =
    t.protocol === 'wss' &&
    (o.ca !== undefined ||
      o.cert !== undefined ||
      o.rejectUnauthorized === false ||
      o.checkServerIdentity !== undefined);
  const transport: Transport = {
    write: (b) => {
      if (ws !== null && ws.readyState === 1) ws.send(b);
    },
    end: () => {
      if (ws === null) cancelled = true;
      else ws.close(1000);
    },
    destroy: (err) => {
      if (err !== undefined) error ??= err;
      if (ws === null) cancelled = true;
      else ws.close();
    },
  };
  webSocketCtor(o, needsTls).then(
    (Ctor) => {
      if (cancelled) return finish(error);
      const tlsOpts = t.protocol === 'wss' ? tlsOptions(o, t) : {};
      ws = new Ctor(url, ['mqtt'], tlsOpts);
      ws.binaryType = 'arraybuffer';
      ws.onopen = () => owner.transportOpen(transport);
      ws.onmessage = (ev) => {
        const d = ev.data;
        if (d instanceof ArrayBuffer) owner.transportData(transport, new Uint8Array(d));
        else if (ArrayBuffer.isView(d))
          owner.transportData(transport, new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
        else {
          error ??= new Error('WebSocket text frame: MQTT runs over binary frames only');
          ws?.close(1003);
        }
      };
      ws.onerror = (ev) => {
        const e = (ev as { error?: unknown }).error;
        error ??= e instanceof Error ? e : new Error('WebSocket error');
      };
      ws.onclose = () => finish(error);
    },
    (err: Error) => finish(err),
  );
  return transport;
}

export function openTransport(o: TransportOptions, t: Target, owner: TransportOwner): Transport {
  switch (t.protocol) {
    case 'mqtt':
      return new SocketTransport(net.connect({ host: t.host, port: t.port }), 'connect', owner);
    case 'mqtts':
      return new SocketTransport(tls.connect(tlsOptions(o, t)), 'secureConnect', owner);
    default:
      return webSocketTransport(o, t, owner);
  }
}
