/**
 * A channel's chart: one SVG path over the last minutes, drawn by hand. uPlot (the small,
 * well-kept choice) is 22 KB gzipped on its own, more than this whole page; one series per
 * channel, a few hundred points, redrawn at most a few times a second, is a path's `d`.
 */

export interface Spark {
  /** SVG path data in a `width` x `height` box; empty with fewer than two points. */
  d: string;
  min: number;
  max: number;
}

/** Path of `points` ([time, value], oldest first) over [t0, t1] in a width x height box. */
export function sparkPath(
  points: ReadonlyArray<readonly [number, number]>,
  t0: number,
  t1: number,
  width: number,
  height: number,
): Spark {
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (const [, v] of points) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (points.length < 2 || t1 <= t0) return { d: '', min, max };
  // A flat line sits in the middle; otherwise 1 px of room above and below.
  const span = max - min;
  const pad = 1;
  const sx = width / (t1 - t0);
  const sy = span > 0 ? (height - 2 * pad) / span : 0;
  let d = '';
  for (let i = 0; i < points.length; i++) {
    const [t, v] = points[i];
    const x = Math.max(0, (t - t0) * sx);
    const y = span > 0 ? height - pad - (v - min) * sy : height / 2;
    d += `${i === 0 ? 'M' : 'L'}${x.toFixed(1)} ${y.toFixed(1)}`;
  }
  return { d, min, max };
}
