/**
 * Line faults applied to what the firmware writes, per frame (or text line): garbage before
 * it, a flipped bit in it, a dropped byte from it. Rates are probabilities per frame, drawn
 * from the seeded RNG; one-shot faults can be queued from tests.
 */
import type { Rng } from './rng.ts';

export interface FaultRates {
  /** Probability that 1..32 random bytes precede a frame. */
  garbage?: number;
  /** Probability that one bit of a frame is flipped. */
  bitflip?: number;
  /** Probability that one byte of a frame is dropped. */
  drop?: number;
}

export interface FaultStats {
  garbageBursts: number;
  garbageBytes: number;
  bitflips: number;
  drops: number;
}

export class FaultInjector {
  readonly stats: FaultStats = { garbageBursts: 0, garbageBytes: 0, bitflips: 0, drops: 0 };
  rates: Required<FaultRates>;
  private queued: Array<'garbage' | 'bitflip' | 'drop'> = [];
  private queuedGarbage: Uint8Array[] = [];

  constructor(
    private readonly rng: Rng,
    rates: FaultRates = {},
  ) {
    this.rates = { garbage: rates.garbage ?? 0, bitflip: rates.bitflip ?? 0, drop: rates.drop ?? 0 };
    for (const [k, v] of Object.entries(this.rates)) {
      if (!(v >= 0 && v <= 1)) throw new RangeError(`${k} rate must be in 0..1`);
    }
  }

  /** Garbage before the next frame: the given bytes, or 1..32 random ones. */
  garbageNext(bytes?: Uint8Array): void {
    if (bytes !== undefined) this.queuedGarbage.push(bytes);
    else this.queued.push('garbage');
  }
  bitflipNext(): void {
    this.queued.push('bitflip');
  }
  dropNext(): void {
    this.queued.push('drop');
  }

  /** Returns the chunks to write for one frame; never modifies `frame` itself (it may be retransmitted). */
  apply(frame: Uint8Array): Uint8Array[] {
    const once = this.queued;
    this.queued = [];
    const out: Uint8Array[] = [];
    for (const g of this.queuedGarbage) out.push(this.countGarbage(g));
    this.queuedGarbage = [];
    if (once.includes('garbage') || this.rng.chance(this.rates.garbage)) {
      out.push(this.countGarbage(this.rng.bytes(1 + this.rng.int(32))));
    }
    let f = frame;
    if (f.length > 0 && (once.includes('bitflip') || this.rng.chance(this.rates.bitflip))) {
      f = f.slice();
      const bit = this.rng.int(f.length * 8);
      f[bit >> 3] ^= 1 << (bit & 7);
      this.stats.bitflips++;
    }
    if (f.length > 0 && (once.includes('drop') || this.rng.chance(this.rates.drop))) {
      const at = this.rng.int(f.length);
      const g = new Uint8Array(f.length - 1);
      g.set(f.subarray(0, at));
      g.set(f.subarray(at + 1), at);
      f = g;
      this.stats.drops++;
    }
    out.push(f);
    return out;
  }

  private countGarbage(g: Uint8Array): Uint8Array {
    this.stats.garbageBursts++;
    this.stats.garbageBytes += g.length;
    return g;
  }
}
