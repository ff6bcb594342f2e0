/**
 * What the queue tells its owner through `onEvent`, for logs and alerts: one event when a
 * failure or a spell of drops starts, summaries while it lasts, one when it ends. Never one per
 * message: a full disk or a full queue under a steady flow of readings would flood the log.
 */
export type DropReason = 'maxBytes' | 'maxCount' | 'maxAge';

export type DurableQueueEvent =
  /** A write or fsync failed: the puts it covered were rejected, new ones are refused for now. */
  | {
      type: 'write-failed';
      code: 'NO_SPACE' | 'FAILED';
      error: string;
      /** Puts in flight that were rejected (they were never reported stored). */
      rejectedPuts: number;
    }
  /** Every reportIntervalMs while the failure stands (and puts keep coming). */
  | {
      type: 'write-failing';
      code: 'NO_SPACE' | 'FAILED';
      error: string;
      forMs: number;
      /** Puts rejected since the failure started. */
      rejectedPuts: number;
      /** Write attempts that failed since the failure started (the first included). */
      failures: number;
    }
  /** A put was stored again after a failure: the queue recovered without being reopened. */
  | { type: 'write-recovered'; forMs: number; rejectedPuts: number; failures: number }
  /** A drop-oldest bound removed a stored, unacknowledged message: the first of a spell. */
  | { type: 'drop-start'; reason: DropReason; seq: number }
  /**
   * Every reportIntervalMs while messages are being dropped (`ongoing: true`), then once when a
   * whole interval passed without a drop or the queue closes (`ongoing: false`). Counts are for
   * the spell; seqs firstSeq..lastSeq were dropped (the ones acknowledged in between were not).
   */
  | {
      type: 'drop-summary';
      reason: DropReason;
      dropped: number;
      firstSeq: number;
      lastSeq: number;
      forMs: number;
      ongoing: boolean;
    };

/** Spells of drops: one event when one starts, a summary every `everyMs` and at its end. */
export class DropSpells {
  private spell: {
    since: number;
    reason: DropReason;
    dropped: number;
    sinceReport: number;
    firstSeq: number;
    lastSeq: number;
  } | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly everyMs: number,
    private readonly emit: (event: DurableQueueEvent) => void,
  ) {}

  dropped(seq: number, reason: DropReason): void {
    let s = this.spell;
    if (s === null) {
      s = { since: Date.now(), reason, dropped: 0, sinceReport: 0, firstSeq: seq, lastSeq: seq };
      this.spell = s;
      this.emit({ type: 'drop-start', reason, seq });
      this.timer = setInterval(() => this.report(), this.everyMs);
      this.timer.unref();
    }
    s.dropped++;
    s.sinceReport++;
    s.lastSeq = seq;
  }

  /** Ends the spell that is running, with its summary (close()). */
  end(): void {
    if (this.spell !== null) this.summary(false);
  }

  private report(): void {
    this.summary(this.spell !== null && this.spell.sinceReport > 0);
  }

  private summary(ongoing: boolean): void {
    const s = this.spell;
    if (s === null) return;
    s.sinceReport = 0;
    if (!ongoing) {
      this.spell = null;
      if (this.timer !== null) clearInterval(this.timer);
      this.timer = null;
    }
    this.emit({
      type: 'drop-summary',
      reason: s.reason,
      dropped: s.dropped,
      firstSeq: s.firstSeq,
      lastSeq: s.lastSeq,
      forMs: Date.now() - s.since,
      ongoing,
    });
  }
}
