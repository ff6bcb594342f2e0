/**
 * Topic matching by the spec (MQTT 3.1.1 and 5.0 section 4.7): walks strings by index and char
 * code, allocates nothing. The tries' level table is in level-table.ts.
 */
import { isShared, SHARED_PREFIX } from './topic.ts';

const PLUS = 0x2b;
const HASH = 0x23;
const DOLLAR = 0x24;

/**
 * Whether topic name `topic` matches topic filter `filter`. `+` matches exactly one level,
 * empty levels included; `#` matches the parent level and any number of levels below; a
 * filter whose first level is a wildcard matches no topic that starts with `$` [MQTT-4.7.2-1].
 * A shared filter `$share/{group}/{filter}` matches what its inner filter matches.
 *
 * Inputs are assumed valid (see validateTopicName/validateTopicFilter); an invalid one gives
 * an unspecified answer, never an exception. Allocates nothing.
 */
export function matchTopic(filter: string, topic: string): boolean {
  let f = 0;
  if (isShared(filter)) {
    const slash = filter.indexOf('/', SHARED_PREFIX.length);
    if (slash < 0) return false;
    f = slash + 1;
  }
  const fn = filter.length;
  const tn = topic.length;
  const dollar = topic.charCodeAt(0) === DOLLAR;
  // Level by level: [f, fe) of the filter against [t, te) of the topic; t > tn once the topic
  // has run out (only a `#` level still matches then: it takes the parent level too).
  let t = 0;
  for (let first = true; ; first = false) {
    let fe = filter.indexOf('/', f);
    if (fe < 0) fe = fn;
    let te = topic.indexOf('/', t);
    if (te < 0) te = tn;
    const w = fe === f + 1 ? filter.charCodeAt(f) : 0;
    if (w === HASH) return !(first && dollar);
    if (t > tn) return false;
    if (w === PLUS) {
      if (first && dollar) return false;
    } else {
      const n = fe - f;
      if (n !== te - t) return false;
      for (let i = 0; i < n; i++) if (filter.charCodeAt(f + i) !== topic.charCodeAt(t + i)) return false;
    }
    if (fe === fn) return te === tn;
    f = fe + 1;
    t = te + 1;
  }
}

/** Whether the filter (shared or not) holds a wildcard level. */
export function hasWildcard(filter: string): boolean {
  for (let i = 0; i < filter.length; i++) {
    const c = filter.charCodeAt(i);
    if (c === PLUS || c === HASH) return true;
  }
  return false;
}
