/**
 * "Did you mean": the key closest to a mistyped one. The gateways' config readers (broker-lite's
 * mosquitto.conf, the agent's YAML) both answer an unknown key with it; it lives here, in the
 * one Node package they share that is neither the size-budgeted codec nor an MQTT client.
 */

/** Levenshtein distance: the fewest insertions, deletions and substitutions from a to b. */
export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j];
      prev[j] = Math.min(up + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length];
}

/** Longer words get no suggestion: no key is that long, and it bounds the cost of hostile input. */
const MAX_WORD = 64;
const MAX_EDITS = 2;

/**
 * The candidate within two edits of `word`, the first of the closest; undefined when none is or
 * the word is longer than 64 characters. `fold` maps both sides before they are compared (e.g.
 * to lower case); the candidate is returned as given.
 */
export function nearest(
  word: string,
  candidates: Iterable<string>,
  fold: (s: string) => string = (s) => s,
): string | undefined {
  if (word.length > MAX_WORD) return undefined;
  const w = fold(word);
  let best: string | undefined;
  let bestD = MAX_EDITS + 1;
  for (const c of candidates) {
    const f = fold(c);
    // The distance is at least the difference in length.
    if (Math.abs(f.length - w.length) >= bestD) continue;
    const d = editDistance(w, f);
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best;
}
