import net from 'node:net';
import tls from 'node:tls';
import type { Target, TransportOptions } from './target.ts';

export interface TransportHandlers {
  open(): void;
  data(chunk: Uint8Array): void;
  /** Called once, whatever ended the transport. */
  close(error: Error | undefined): void;
}

export interface Transport {
  write(bytes: Uint8Array): void;
  /** Graceful close after pending writes (forced after a grace period). */
  end(): void;
  destroy(): void;
}

const END_GRACE_MS = 2000;

function tlsOptions(o: TransportOptions, t: Target): tls.ConnectionOptions {
  const opts: tls.ConnectionOptions = { host: t.host, port: t.port };
  if (o.ca !== undefined) opts.ca = o.ca as tls.ConnectionOptions['ca'];
  if (o.cert !== undefined) opts.cert = o.cert as tls.ConnectionOptions['cert'];
  if (o.key !== undefined) opts.key = o.key as tls.ConnectionOptions['key'];
  if (o.passphrase !== undefined) opts.passphrase = o.passphrase;
  if (o.rejectUnauthorized !== undefined) opts.rejectUnauthorized = o.rejectUnauthorized;
  const servername = o.servername ?? (net.isIP(t.host) === 0 ? t.host : undefined);
  if (servername !== undefined) opts.servername = servername;
  return opts;
}

function socketTransport(socket: net.Socket, openEvent: string, h: TransportHandlers): Transport {
  let error: Error | undefined;
  let closed = false;
  socket.setNoDelay(true);
  socket.on(openEvent, () => h.open());
  socket.on('data', (d: Uint8Array) => h.data(d));
  socket.on('error', (e) => {
    error ??= e;
  });
  socket.on('close', () => {
    closed = true;
    h.close(error);
  });
  return {
    write: (b) => {
      if (!socket.destroyed) socket.write(b);
    },
    end: () => {
      if (closed) return;
      socket.end();
      setTimeout(() => socket.destroy(), END_GRACE_MS).unref();
    },
    destroy: () => {
      socket.destroy();
    },
  };
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

function webSocketTransport(o: TransportOptions, t: Target, h: TransportHandlers): Transport {
  let ws: WebSocketLike | null = null;
  let done = false;
  let error: Error | undefined;
  let cancelled = false;
  const finish = (err: Error | undefined) => {
    if (done) return;
    done = true;
    h.close(err);
  };
  const host = net.isIPv6(t.host) ? `[${t.host}]` : t.host;
  const url = `${t.protocol}://${host}:${t.port}${t.path.startsWith('/') ? t.path : `/${t.path}`}`;
  const needsTls =
    t.protocol === 'wss' && (o.ca !== undefined || o.cert !== undefined || o.rejectUnauthorized === false);
  webSocketCtor(o, needsTls).then(
    (Ctor) => {
      if (cancelled) return finish(undefined);
      const tlsOpts = t.protocol === 'wss' ? tlsOptions(o, t) : {};
      ws = new Ctor(url, ['mqtt'], tlsOpts);
      ws.binaryType = 'arraybuffer';
      ws.onopen = () => h.open();
      ws.onmessage = (ev) => {
        const d = ev.data;
        if (d instanceof ArrayBuffer) h.data(new Uint8Array(d));
        else if (ArrayBuffer.isView(d)) h.data(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
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
  return {
    write: (b) => {
      if (ws !== null && ws.readyState === 1) ws.send(b);
    },
    end: () => {
      if (ws === null) cancelled = true;
      else ws.close(1000);
    },
    destroy: () => {
      if (ws === null) cancelled = true;
      else ws.close();
    },
  };
}

export function openTransport(o: TransportOptions, t: Target, h: TransportHandlers): Transport {
  switch (t.protocol) {
    case 'mqtt':
      return socketTransport(net.connect({ host: t.host, port: t.port }), 'connect', h);
    case 'mqtts':
      return socketTransport(tls.connect(tlsOptions(o, t)), 'secureConnect', h);
    default:
      return webSocketTransport(o, t, h);
  }
}
