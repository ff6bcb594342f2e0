/**
 * Mosquitto's memory_limit (issue 12.9b). Mosquitto counts every heap allocation against it and
 * refuses the ones over it: an incoming message is dropped and its publisher disconnected. A
 * Node.js process cannot see its allocations one by one, so the process's resident set (what
 * the kernel's OOM killer and an operator see) is sampled every SAMPLE_MS instead, off the
 * message path; while it is over the limit, incoming messages, what grows memory, are refused
 * (handle-publish.ts). Connecting, subscribing and delivering go on, so subscribers can drain
 * what is queued for them.
 */
import type { Broker } from './broker.ts';

/** How often RSS is read (a read of /proc/self/stat on Linux: microseconds). */
export const SAMPLE_MS = 100;

export class MemoryLimit {
  /** Over the limit at the last sample: incoming messages are refused. */
  over = false;
  /** Messages refused since the limit was last crossed, for the log line when it ends. */
  refused = 0;
  /** Messages refused since the start (/metrics). */
  refusedTotal = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly b: Broker,
    /** Bytes; 0 = no limit. */
    private limit: number,
  ) {}

  /** Bytes; 0 = no limit. */
  get bytes(): number {
    return this.limit;
  }

  start(): void {
    if (this.limit <= 0 || this.timer !== null) return;
    this.sample();
    this.timer = setInterval(() => this.sample(), SAMPLE_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** SIGHUP: a new limit (0 = none) applies from now, as in Mosquitto. */
  set(limit: number): void {
    this.limit = limit;
    if (limit <= 0) {
      this.stop();
      this.update(0);
    } else if (this.timer === null) this.start();
    else this.sample();
  }

  private sample(): void {
    this.update(process.memoryUsage.rss());
  }

  private update(rss: number): void {
    const over = this.limit > 0 && rss > this.limit;
    if (over === this.over) return;
    this.over = over;
    this.b.memoryFull = over;
    if (over) {
      this.refused = 0;
      this.b.log('warning', 'memory_limit exceeded: refusing incoming messages', {
        rss,
        memoryLimit: this.limit,
      });
    } else {
      this.b.log('notice', 'memory under memory_limit: accepting messages again', {
        rss,
        memoryLimit: this.limit,
        refusedWhileOver: this.refused,
      });
    }
  }
}
