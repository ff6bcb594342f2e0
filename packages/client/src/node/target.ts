export type TransportProtocol = 'mqtt' | 'mqtts' | 'ws' | 'wss';

/** Where and how to connect; TLS fields apply to mqtts and wss. */
export interface TransportOptions {
  protocol?: TransportProtocol | 'tcp' | 'tls' | 'ssl';
  host?: string;
  port?: number;
  /** WebSocket path; default '/mqtt'. */
  path?: string;
  ca?: string | Uint8Array | Array<string | Uint8Array>;
  cert?: string | Uint8Array;
  key?: string | Uint8Array;
  passphrase?: string;
  /** TLS server name (SNI and certificate check); default the host when it is a name. */
  servername?: string;
  /** Default true. */
  rejectUnauthorized?: boolean;
  /** WebSocket: force the `ws` package even when a global WebSocket exists. */
  wsModule?: 'global' | 'ws';
}

export interface Target {
  protocol: TransportProtocol;
  host: string;
  port: number;
  path: string;
}

const DEFAULT_PORTS: Record<TransportProtocol, number> = { mqtt: 1883, mqtts: 8883, ws: 80, wss: 443 };

function normalise(p: string): TransportProtocol {
  const s = p.replace(/:$/, '').toLowerCase();
  if (s === 'mqtt' || s === 'tcp') return 'mqtt';
  if (s === 'mqtts' || s === 'tls' || s === 'ssl') return 'mqtts';
  if (s === 'ws' || s === 'wss') return s;
  throw new RangeError(`unsupported protocol '${p}': mqtt, mqtts, ws or wss`);
}

/** URL fields (credentials included) merged under explicit options. */
export function parseUrl(url: string): { target: Partial<Target>; username?: string; password?: string } {
  const u = new URL(url);
  const protocol = normalise(u.protocol);
  const out: { target: Partial<Target>; username?: string; password?: string } = {
    target: { protocol, host: u.hostname.replace(/^\[|\]$/g, '') },
  };
  if (u.port !== '') out.target.port = Number(u.port);
  if (u.pathname !== '' && u.pathname !== '/') out.target.path = u.pathname + u.search;
  if (u.username !== '') out.username = decodeURIComponent(u.username);
  if (u.password !== '') out.password = decodeURIComponent(u.password);
  return out;
}

export function resolveTarget(o: TransportOptions, fromUrl: Partial<Target>): Target {
  const protocol = normalise(o.protocol ?? fromUrl.protocol ?? 'mqtt');
  return {
    protocol,
    host: o.host ?? fromUrl.host ?? 'localhost',
    port: o.port ?? fromUrl.port ?? DEFAULT_PORTS[protocol],
    path: o.path ?? fromUrl.path ?? '/mqtt',
  };
}
