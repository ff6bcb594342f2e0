import type { Rng } from './rng.ts';

export interface SensorSpec {
  name: string;
  unit?: string;
  /** `walk`: bounded random walk plus read noise; `counter`: +1 per sample (gaps reveal loss). */
  kind: 'walk' | 'counter';
  min?: number;
  max?: number;
  start?: number;
  /** Standard deviation of one walk step. */
  step?: number;
  /** Standard deviation of read noise around the walk (an ADC's jitter). */
  noise?: number;
  decimals?: number;
}

export const DEFAULT_SENSORS: readonly SensorSpec[] = [
  {
    name: 'temp',
    unit: 'Cel',
    kind: 'walk',
    min: -10,
    max: 45,
    start: 21,
    step: 0.05,
    noise: 0.02,
    decimals: 2,
  },
  { name: 'hum', unit: '%RH', kind: 'walk', min: 5, max: 95, start: 45, step: 0.2, noise: 0.1, decimals: 1 },
  {
    name: 'pressure',
    unit: 'hPa',
    kind: 'walk',
    min: 950,
    max: 1050,
    start: 1013.25,
    step: 0.05,
    noise: 0.02,
    decimals: 2,
  },
  { name: 'counter', kind: 'counter', start: 0 },
];

export class Sensor {
  private x: number;
  constructor(
    readonly spec: SensorSpec,
    private readonly rng: Rng,
  ) {
    this.x = spec.start ?? 0;
  }

  sample(): number {
    const s = this.spec;
    if (s.kind === 'counter') return this.x++;
    const min = s.min ?? Number.NEGATIVE_INFINITY;
    const max = s.max ?? Number.POSITIVE_INFINITY;
    this.x += this.rng.gaussian() * (s.step ?? 0.1);
    // Reflect at the bounds so the walk stays in range without sticking to an edge.
    if (this.x > max) this.x = max - (this.x - max);
    if (this.x < min) this.x = min + (min - this.x);
    const v = Math.min(max, Math.max(min, this.x + this.rng.gaussian() * (s.noise ?? 0)));
    const k = 10 ** (s.decimals ?? 2);
    return Math.round(v * k) / k;
  }
}
