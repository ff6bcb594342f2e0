/**
 * `log_dest topic`: each log line a message on `$SYS/broker/log/...`, as Mosquitto publishes it
 * (QoS 2, not retained, a message expiry of 20 s; debug lines never, so that the lines about
 * sending a log line do not make more). Two guards Mosquitto does not have:
 * - a line logged while log lines are being published (the publish of a log line caused it:
 *   an ACL backend failing on the log topic, a subscriber too slow for it) is not published;
 * - a flood is bounded: at most LOG_TOPIC_RATE lines a second (a token bucket), the rest counted
 *   and summed up in one `W` line a second.
 * Lines are published on the next microtask, never from inside the broker operation that logged
 * them (routing a message while another is half routed would share its encode buffer).
 */
import type { LogType } from './log.ts';
import { type Message, makeMessage } from './message.ts';

/** Mosquitto's topic for each log_type; debug is never published. */
export const LOG_TOPICS: Readonly<Record<LogType, string | undefined>> = {
  error: '$SYS/broker/log/E',
  warning: '$SYS/broker/log/W',
  notice: '$SYS/broker/log/N',
  information: '$SYS/broker/log/I',
  debug: undefined,
  subscribe: '$SYS/broker/log/M/subscribe',
  unsubscribe: '$SYS/broker/log/M/unsubscribe',
  websockets: '$SYS/broker/log/WS',
};

/** Lines published a second, at most (and the burst allowed at once). */
export const LOG_TOPIC_RATE = 200;
/** Longer lines are cut (Mosquitto cuts at 1,000 characters). */
export const LOG_TOPIC_MAX_CHARS = 4096;
/** Seconds a log message waits for an offline subscriber, as in Mosquitto. */
const EXPIRY_SECONDS = 20;
const SUMMARY_TOPIC = '$SYS/broker/log/W';

/** What a log line is published into: the broker. */
export interface LogPublisher {
  publish(msg: Message): void;
}

export interface LogTopicStats {
  published: number;
  /** Over the rate. */
  dropped: number;
  /** Logged while log lines were being published. */
  suppressed: number;
}

export class LogTopic {
  private target: LogPublisher | null = null;
  /** topic, line, topic, line, ...: at most LOG_TOPIC_RATE lines (the bucket bounds it). */
  private readonly pending: string[] = [];
  private scheduled = false;
  private publishing = false;
  private tokens = LOG_TOPIC_RATE;
  private refilledAt = Date.now();
  private unreported = 0;
  private reportTimer: NodeJS.Timeout | null = null;
  readonly stats: LogTopicStats = { published: 0, dropped: 0, suppressed: 0 };

  /** `line(msg)`: the Mosquitto line (timestamp prefix) of a message of the guard's own. */
  constructor(private readonly line: (msg: string) => string) {}

  /** The broker to publish into; null stops publishing (the broker is closing). */
  attach(target: LogPublisher | null): void {
    this.target = target;
    if (target === null) {
      this.pending.length = 0;
      if (this.reportTimer !== null) clearTimeout(this.reportTimer);
      this.reportTimer = null;
    }
  }

  write(type: LogType, line: string): void {
    const topic = LOG_TOPICS[type];
    if (topic === undefined || this.target === null) return;
    if (this.publishing) {
      this.stats.suppressed++;
      return;
    }
    const now = Date.now();
    this.tokens = Math.min(LOG_TOPIC_RATE, this.tokens + ((now - this.refilledAt) * LOG_TOPIC_RATE) / 1000);
    this.refilledAt = now;
    if (this.tokens < 1) {
      this.stats.dropped++;
      if (this.unreported++ === 0) {
        this.reportTimer = setTimeout(() => this.report(), 1000);
        this.reportTimer.unref();
      }
      return;
    }
    this.tokens--;
    this.pending.push(topic, line.length > LOG_TOPIC_MAX_CHARS ? line.slice(0, LOG_TOPIC_MAX_CHARS) : line);
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  private flush(): void {
    this.scheduled = false;
    const target = this.target;
    if (target === null) return;
    this.publishing = true;
    try {
      for (let i = 0; i < this.pending.length; i += 2)
        this.send(target, this.pending[i], this.pending[i + 1]);
    } finally {
      this.pending.length = 0;
      this.publishing = false;
    }
  }

  private report(): void {
    this.reportTimer = null;
    const n = this.unreported;
    this.unreported = 0;
    const target = this.target;
    if (target === null || n === 0) return;
    this.publishing = true;
    try {
      this.send(
        target,
        SUMMARY_TOPIC,
        this.line(`${n} log lines not published to $SYS/broker/log: over ${LOG_TOPIC_RATE} a second`),
      );
    } finally {
      this.publishing = false;
    }
  }

  private send(target: LogPublisher, topic: string, line: string): void {
    const now = Date.now();
    try {
      target.publish(
        makeMessage(topic, Buffer.from(line), 2, false, { messageExpiryInterval: EXPIRY_SECONDS }, now),
      );
      this.stats.published++;
    } catch {
      // A log line must never take the broker down; the other destinations have it.
    }
  }
}
