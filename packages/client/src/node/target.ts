import type { PeerCertificate } from 'node:tls';

export type TransportProtocol = 'mqtt' | 'mqtts' | 'ws' | 'wss';

/** One broker address of a failover list; the port defaults to the protocol's. */
export interface ServerAddress {
  host: string;
  port?: number;
}

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
  /**
   * TLS: replaces the host-name check (tls.checkServerIdentity) once the chain has been
   * verified; return an Error to refuse. `() => undefined` accepts any name on a trusted chain
   * (Mosquitto's bridge_insecure), unlike rejectUnauthorized false, which trusts any chain.
   */
  checkServerIdentity?: (hostname: string, cert: PeerCertificate) => Error | undefined;
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

export function defaultPort(protocol: TransportProtocol): number {
  return DEFAULT_PORTS[protocol];
}

/** A failover address checked up front: a bad one would otherwise fail only when its turn came. */
export function checkServer(s: ServerAddress): void {
  if (typeof s?.host !== 'string' || s.host === '') throw new RangeError('a server needs a host');
  if (s.port !== undefined && (!Number.isInteger(s.port) || s.port < 1 || s.port > 65535))
    throw new RangeError(`server port ${s.port} outside 1..65535`);
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
