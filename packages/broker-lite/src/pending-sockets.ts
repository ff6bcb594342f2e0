/**
 * Sockets a listener accepted that are not MQTT connections yet: in their TLS handshake (TLS
 * and WebSocket listeners), sending their HTTP upgrade request, or never sending anything. Each costs a file descriptor and
 * buffers like a connection, so they count in max_connections, get the connect timeout, and
 * are ended by Broker.close() (an HTTP server's close() waits for every socket it has).
 */
import type net from 'node:net';
import type { Broker } from './broker.ts';
import { ticks } from './conn-state.ts';

interface Pending {
  socket: net.Socket;
  /** ticks() when accepted. */
  at: number;
  /** Its close listener, removed once it is a connection (it would hold the key and this entry). */
  onClose: () => void;
}

export class PendingSockets {
  /**
   * Keyed by the TCP 4-tuple: a TLS socket layered over the raw one reports the same, and the
   * upgrade sees the TLS socket where the listener accepted the raw one.
   */
  private readonly byPeer = new Map<string, Pending>();
  private closed = false;

  get size(): number {
    return this.byPeer.size;
  }

  /** Holds `socket` until it is upgraded or closes; false (socket destroyed) after close(). */
  add(socket: net.Socket, now: number): boolean {
    const key = peerKey(socket);
    // An already-reset socket has no address; a duplicate 4-tuple cannot be live twice.
    if (this.closed || key === undefined || this.byPeer.has(key)) {
      socket.destroy();
      return false;
    }
    const entry: Pending = {
      socket,
      at: now,
      onClose: () => {
        if (this.byPeer.get(key) === entry) this.byPeer.delete(key);
      },
    };
    this.byPeer.set(key, entry);
    socket.once('close', entry.onClose);
    return true;
  }

  /** The socket `upgraded` runs over (itself, or the TLS socket on it) became a connection. */
  upgraded(upgraded: net.Socket): void {
    const key = peerKey(upgraded);
    const p = key === undefined ? undefined : this.byPeer.get(key);
    if (p === undefined) return;
    this.byPeer.delete(key as string);
    p.socket.off('close', p.onClose);
  }

  /** Destroys the sockets accepted before `deadline` (ticks); returns how many. */
  expire(deadline: number): number {
    let n = 0;
    for (const [key, p] of this.byPeer) {
      if (p.at >= deadline) continue;
      this.byPeer.delete(key);
      p.socket.destroy();
      n++;
    }
    return n;
  }

  /** Destroys every socket, and any accepted from now on. */
  close(): void {
    this.closed = true;
    for (const p of this.byPeer.values()) p.socket.destroy();
    this.byPeer.clear();
  }
}

function peerKey(s: net.Socket): string | undefined {
  const remote = s.remoteAddress;
  if (remote === undefined) return undefined;
  return `${remote} ${s.remotePort} ${s.localAddress} ${s.localPort}`;
}

/**
 * A listener's raw socket, before any TLS or HTTP byte: refused past max_connections, else held
 * as pending until it becomes a connection (`upgraded`) or the connect timeout ends it.
 */
export function holdPending(b: Broker, socket: net.Socket): void {
  if (b.atConnectionLimit()) {
    b.log('notice', 'connection refused: max_connections reached', {
      remote: `${socket.remoteAddress}:${socket.remotePort}`,
    });
    socket.destroy();
    return;
  }
  b.pendingSockets.add(socket, ticks());
}
