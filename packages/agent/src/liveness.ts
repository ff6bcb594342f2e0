/**
 * Issue 19.2: a serial port that goes quiet is woken. A device reports every interval (its
 * HELLO's `p`, or the port's configured interval), so a port with no valid frame for clearly
 * longer than that is not a quiet device but a stuck line: a device that lost the agent's HELLO
 * request, a write parked on the device's side, a USB adapter that stopped delivering. The
 * agent asks it for HELLO; if that brings nothing within one more interval it reopens the port
 * (a reset line, DTR toggled), and keeps doing both while the silence lasts. Text-line boards
 * take no commands: a silent one is reopened at once.
 *
 * Sans-IO: the session tells it what it heard and when the port opened or closed; the agent's
 * timer calls `step` at `deadline`, and the session acts on the answer.
 */

/** A port is silent after this long without a valid frame: 1.5 intervals, at least interval + 0.5 s. */
export function silentAfterMs(intervalMs: number): number {
  return Math.max(Math.round(intervalMs * 1.5), intervalMs + 500);
}

/** How long a HELLO request may go unanswered before the port is reopened: one interval, 1..10 s. */
export function answerWithinMs(intervalMs: number): number {
  return Math.min(Math.max(intervalMs, 1000), 10_000);
}

/** In the port's counters (status, health, metrics). */
export interface SilenceCounters {
  /** Silent spells (episodes): each begins with the first HELLO request or reopen, ends at a frame. */
  silences: number;
  /** HELLO requests sent because the port was silent. */
  silenceProbes: number;
  /** Reopens because the port stayed silent (after a HELLO request; text framings at once). */
  silenceReopens: number;
}

/** One silent spell, from the last frame heard before it. */
export interface SilenceEpisode {
  since: number;
  probes: number;
  reopens: number;
}

export interface SilenceStep {
  action: 'probe' | 'reopen';
  /** This step began the episode (the one to log). */
  first: boolean;
  /** Since the last frame heard. */
  silentMs: number;
}

export class SilenceWatch {
  /** When a valid frame last arrived, or the port last opened (a fresh port gets a full spell). */
  private heardAt = 0;
  private probedAt: number | undefined;
  /** The port is open: there is something to watch. */
  private active = false;
  /** The spell being handled, if any. */
  episode: SilenceEpisode | undefined;

  constructor(
    private readonly counters: SilenceCounters,
    /** HELLO can be asked for (native framing); otherwise silence goes straight to a reopen. */
    private readonly canProbe: boolean,
  ) {}

  opened(now: number): void {
    this.active = true;
    this.heardAt = now;
    this.probedAt = undefined;
  }

  /** The port closed: nothing to watch until it opens. A spell under way goes on (a reopen is part of it). */
  closed(): void {
    this.active = false;
    this.probedAt = undefined;
  }

  /** A valid frame or line: the spell under way, if any, is over (returned, for the log). */
  heard(now: number): SilenceEpisode | undefined {
    this.heardAt = now;
    this.probedAt = undefined;
    const e = this.episode;
    this.episode = undefined;
    return e;
  }

  /** When `step` next has something to do; Infinity when nothing is watched. */
  deadline(intervalMs: number): number {
    if (!this.active || intervalMs <= 0) return Number.POSITIVE_INFINITY;
    return this.probedAt !== undefined
      ? this.probedAt + answerWithinMs(intervalMs)
      : this.heardAt + silentAfterMs(intervalMs);
  }

  /** At or after `deadline`: what to do now (undefined: nothing yet). */
  step(now: number, intervalMs: number): SilenceStep | undefined {
    if (now < this.deadline(intervalMs)) return undefined;
    const first = this.episode === undefined;
    if (this.episode === undefined) {
      this.episode = { since: this.heardAt, probes: 0, reopens: 0 };
      this.counters.silences++;
    }
    const e = this.episode;
    const silentMs = now - e.since;
    if (this.probedAt === undefined && this.canProbe) {
      this.probedAt = now;
      e.probes++;
      this.counters.silenceProbes++;
      return { action: 'probe', first, silentMs };
    }
    // Asked and not answered, or nothing to ask: the port is reopened (and opened() restarts the clock).
    this.probedAt = undefined;
    this.heardAt = now;
    e.reopens++;
    this.counters.silenceReopens++;
    return { action: 'reopen', first, silentMs };
  }
}
