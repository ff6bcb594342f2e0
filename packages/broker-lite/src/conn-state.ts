/**
 * What the connection and its handlers share below them: the connection's state and the tick
 * clock. A leaf module, so that the handlers and deliver need no value from connection.ts.
 */

export enum ConnState {
  AwaitConnect = 0,
  Authenticating = 1,
  Connected = 2,
  Closing = 3,
}

const T0 = Date.now();
/** Milliseconds since the module loaded, in 10 ms ticks: a small integer for 248 days. */
export function ticks(): number {
  return ((Date.now() - T0) / 10) | 0;
}
export const TICKS_PER_SECOND = 100;
