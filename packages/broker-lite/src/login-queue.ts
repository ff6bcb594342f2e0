/**
 * Admission to password hashing. PBKDF2 runs on libuv's thread pool (4 threads by default),
 * which the broker's file I/O (persistence) shares, so at most MAX_CONCURRENT_HASHES run at once
 * and the rest wait. Waiting is fair between source addresses: each address has its own small
 * queue and a freed slot goes to the next address in turn (round robin), so one address
 * flooding bad logins delays another address's login by about one hash per busy address, not by
 * everything it queued. Past its bound an address's login fails at once (HashQueueFullError).
 */
import { isIPv4, isIPv6 } from 'node:net';

export const MAX_CONCURRENT_HASHES = 2;
/** Logins waiting for a hash, all addresses together. */
export const MAX_QUEUED_HASHES = 10_000;
/**
 * Logins one address may have waiting. Small so a flood from one address stays cheap for
 * everyone else; large enough for a NAT'd fleet reconnecting at once (the rest are told "busy"
 * and retry).
 */
export const MAX_QUEUED_PER_SOURCE = 32;

export class HashQueueFullError extends Error {
  override readonly name = 'HashQueueFullError';
  /** `source`: the address's own bound; `all`: every slot is taken, by busier addresses. */
  readonly scope: 'source' | 'all';
  constructor(scope: 'source' | 'all') {
    super(
      scope === 'source'
        ? 'too many logins from this address waiting for a password check'
        : 'too many logins waiting for a password check',
    );
    this.scope = scope;
  }
}

interface Waiter {
  resolve(): void;
  reject(err: Error): void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

let running = 0;
let waiting = 0;
/** Logins refused for a full queue since the start (/metrics). */
let refused = 0;
/**
 * Waiting logins by source, in serving order: the first key is served next, then moves to the
 * back (Map keeps insertion order, so delete + set is the round robin).
 */
const queues = new Map<string, Waiter[]>();

/**
 * The key logins are queued under: the IPv4 address, or an IPv6 address's /64 (one host on a
 * LAN can use a whole /64; an IPv4-mapped IPv6 address counts as its IPv4 address).
 */
export function sourceKey(address: string | undefined): string {
  if (address === undefined || address === '') return '';
  if (address.startsWith('::ffff:') && isIPv4(address.slice(7))) return address.slice(7);
  if (!isIPv6(address)) return address;
  const bare = address.replace(/%.*$/, '');
  const halves = bare.split('::');
  const groups = (part: string | undefined): string[] =>
    part === undefined || part === ''
      ? []
      : part.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g]));
  const head = groups(halves[0]);
  const tail = groups(halves[1]);
  const all = [...head, ...Array<string>(Math.max(0, 8 - head.length - tail.length)).fill('0'), ...tail];
  return `${all
    .slice(0, 4)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

/**
 * Runs `work` (one hash) when a slot is free and it is `source`'s turn. `signal`: the client
 * went away; a login still waiting leaves the queue (rejecting with the signal's reason), so
 * an attacker's abandoned connections cost no hash and hold no place.
 */
export async function withHashSlot<T>(
  source: string,
  work: () => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  signal?.throwIfAborted();
  if (running < MAX_CONCURRENT_HASHES) running++;
  // A finished hash hands its slot straight to the next waiter, so `running` never overshoots.
  else await enqueue(source, signal);
  try {
    return await work();
  } finally {
    release();
  }
}

function enqueue(source: string, signal: AbortSignal | undefined): Promise<void> {
  let q = queues.get(source);
  const mine = q?.length ?? 0;
  if (mine >= MAX_QUEUED_PER_SOURCE) {
    refused++;
    throw new HashQueueFullError('source');
  }
  if (waiting >= MAX_QUEUED_HASHES && !evictFromBusiest(mine)) {
    refused++;
    throw new HashQueueFullError('all');
  }
  if (q === undefined) {
    q = [];
    queues.set(source, q);
  }
  const queue = q;
  waiting++;
  return new Promise<void>((resolve, reject) => {
    const w: Waiter = { resolve, reject, signal, onAbort: undefined };
    if (signal !== undefined) {
      w.onAbort = () => {
        const at = queue.indexOf(w);
        if (at < 0) return;
        queue.splice(at, 1);
        if (queue.length === 0 && queues.get(source) === queue) queues.delete(source);
        waiting--;
        reject(signal.reason);
      };
      signal.addEventListener('abort', w.onAbort, { once: true });
    }
    queue.push(w);
  });
}

function settled(w: Waiter): Waiter {
  if (w.onAbort !== undefined) w.signal?.removeEventListener('abort', w.onAbort);
  return w;
}

/**
 * With every slot taken, an address that has fewer waiting than the busiest one takes the
 * busiest one's newest place (that login fails as busy): many addresses flooding together cannot
 * keep a quiet one out. O(addresses), only when the whole queue is full.
 */
function evictFromBusiest(mine: number): boolean {
  let busiest: Waiter[] | undefined;
  for (const q of queues.values()) if (busiest === undefined || q.length > busiest.length) busiest = q;
  if (busiest === undefined || busiest.length <= mine + 1) return false;
  const evicted = settled(busiest.pop() as Waiter);
  waiting--;
  refused++;
  evicted.reject(new HashQueueFullError('all'));
  return true;
}

function release(): void {
  for (const [source, q] of queues) {
    const next = settled(q.shift() as Waiter);
    queues.delete(source);
    if (q.length > 0) queues.set(source, q);
    waiting--;
    next.resolve();
    return;
  }
  running--;
}

/** For tests, diagnostics and /metrics: hashes running, logins waiting, addresses with logins waiting. */
export function hashLoad(): { running: number; waiting: number; sources: number } {
  return { running, waiting, sources: queues.size };
}

/** Logins refused for a full queue since the start (/metrics). */
export function refusedLogins(): number {
  return refused;
}
