/**
 * `$SYS/broker/load/...`: Mosquitto's load figures. Each is a rate per minute of a counter,
 * averaged exponentially over 1, 5 and 15 minutes (as the kernel's load average), recomputed at
 * every `$SYS` update from the counter's growth since the previous one.
 */

/** The three windows, by Mosquitto's topic suffix and their length in seconds. */
export const LOAD_WINDOWS = [
  ['1min', 60],
  ['5min', 300],
  ['15min', 900],
] as const;

export class LoadAverage {
  /** Per-minute rates over 1, 5 and 15 minutes (LOAD_WINDOWS order). */
  readonly values = [0, 0, 0];
  private last: number;

  /** `count`: the counter's value when the averages start (at 0). */
  constructor(count: number) {
    this.last = count;
  }

  /** The counter is `count` now, `seconds` after the previous update. */
  update(count: number, seconds: number): void {
    if (seconds <= 0) return;
    const rate = ((count - this.last) * 60) / seconds;
    this.last = count;
    for (let i = 0; i < LOAD_WINDOWS.length; i++) {
      const decay = Math.exp(-seconds / LOAD_WINDOWS[i][1]);
      this.values[i] = rate + decay * (this.values[i] - rate);
    }
  }
}
