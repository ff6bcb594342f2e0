export interface BackoffOptions {
  /** First delay cap in ms; default 1,000. */
  reconnectPeriod?: number;
  /** Largest delay in ms; default 30,000. */
  reconnectMaxDelay?: number;
}

/**
 * "Full jitter" exponential backoff: a uniform draw in [0, min(max, base * 2^attempt)], so a
 * fleet of gateways that lost the same broker does not come back in lockstep.
 */
export function backoffDelay(attempt: number, o: BackoffOptions, random: () => number = Math.random): number {
  const base = o.reconnectPeriod ?? 1000;
  const max = o.reconnectMaxDelay ?? 30_000;
  const cap = Math.min(max, base * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * cap);
}
