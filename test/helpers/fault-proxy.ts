/**
 * A fault-injecting TCP proxy on 127.0.0.1 (ephemeral port) in front of one upstream port.
 * Faults, on every connection through it:
 * - `drop`: close both sides gracefully (FIN) and refuse new connections while it lasts;
 * - `stall`: stop forwarding in both directions, sockets open (a black-holed link: only a
 *   keepalive notices). Reading is paused, so TCP backpressure bounds what piles up;
 * - `reset`: RST both sides and refuse new connections while it lasts.
 * `cut(kind, ms)` applies one for `ms`, then lets traffic through again.
 */
import net from 'node:net';

export type FaultKind = 'drop' | 'stall' | 'reset';

interface Pipe {
  client: net.Socket;
  upstream: net.Socket;
}

export interface FaultProxyStats {
  connections: number;
  cuts: Record<FaultKind, number>;
  bytesUp: number;
  bytesDown: number;
}

export class FaultProxy {
  readonly stats: FaultProxyStats = {
    connections: 0,
    cuts: { drop: 0, stall: 0, reset: 0 },
    bytesUp: 0,
    bytesDown: 0,
  };
  private readonly server: net.Server;
  private readonly pipes = new Set<Pipe>();
  private fault: FaultKind | null = null;
  private timer: NodeJS.Timeout | undefined;
  private release: (() => void) | undefined;

  private constructor(
    private upstreamPort: number,
    readonly port: number,
    server: net.Server,
  ) {
    this.server = server;
  }

  static async start(upstreamPort: number): Promise<FaultProxy> {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const proxy = new FaultProxy(upstreamPort, (server.address() as net.AddressInfo).port, server);
    server.on('connection', (s) => proxy.accept(s));
    return proxy;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** Point at another upstream port (a broker restarted elsewhere). */
  retarget(port: number): void {
    this.upstreamPort = port;
  }

  private accept(client: net.Socket): void {
    if (this.fault === 'drop' || this.fault === 'reset') {
      if (this.fault === 'reset') client.resetAndDestroy();
      else client.destroy();
      return;
    }
    this.stats.connections++;
    const upstream = net.connect({ host: '127.0.0.1', port: this.upstreamPort });
    const pipe: Pipe = { client, upstream };
    this.pipes.add(pipe);
    const close = () => {
      this.pipes.delete(pipe);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close);
    upstream.on('error', close);
    client.on('close', close);
    upstream.on('close', close);
    client.on('data', (b: Buffer) => {
      this.stats.bytesUp += b.length;
      if (!upstream.write(b)) client.pause();
    });
    upstream.on('data', (b: Buffer) => {
      this.stats.bytesDown += b.length;
      if (!client.write(b)) upstream.pause();
    });
    upstream.on('drain', () => {
      if (this.fault !== 'stall') client.resume();
    });
    client.on('drain', () => {
      if (this.fault !== 'stall') upstream.resume();
    });
    if (this.fault === 'stall') {
      client.pause();
      upstream.pause();
    }
  }

  /** Applies a fault now; after `ms` (or heal()) the link works again and the promise resolves. */
  cut(kind: FaultKind, ms: number): Promise<void> {
    clearTimeout(this.timer);
    this.heal();
    this.fault = kind;
    this.stats.cuts[kind]++;
    for (const p of [...this.pipes]) {
      if (kind === 'stall') {
        p.client.pause();
        p.upstream.pause();
      } else if (kind === 'reset') {
        p.client.resetAndDestroy();
        p.upstream.resetAndDestroy();
        this.pipes.delete(p);
      } else {
        p.client.end();
        p.upstream.end();
        // A peer that ignores FIN would hold the pipe open: close it after a grace period.
        setTimeout(() => {
          p.client.destroy();
          p.upstream.destroy();
        }, 200).unref();
        this.pipes.delete(p);
      }
    }
    return new Promise((resolve) => {
      this.release = resolve;
      this.timer = setTimeout(() => this.heal(), ms);
    });
  }

  /** Ends the current fault. A stalled pipe resumes (its peers may have given up on it meanwhile). */
  heal(): void {
    clearTimeout(this.timer);
    const was = this.fault;
    this.fault = null;
    const release = this.release;
    this.release = undefined;
    release?.();
    if (was === 'stall') {
      for (const p of this.pipes) {
        p.client.resume();
        p.upstream.resume();
      }
    }
  }

  /** Closes every pipe (RST) without refusing new ones. */
  resetAll(): void {
    for (const p of [...this.pipes]) {
      p.client.resetAndDestroy();
      p.upstream.resetAndDestroy();
    }
    this.pipes.clear();
  }

  async close(): Promise<void> {
    clearTimeout(this.timer);
    this.fault = 'reset';
    this.resetAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
