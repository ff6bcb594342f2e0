import { MqttError } from './errors.ts';
import { utf8ByteLength } from './utf8.ts';

/** MQTT strings carry a 16-bit length [MQTT-1.5.4]; topics are MQTT strings [MQTT-4.7.3-3]. */
export const MAX_TOPIC_BYTES = 65_535;

/** The prefix that makes a topic filter a shared subscription (MQTT 5.0 section 4.8.2). */
export const SHARED_PREFIX = '$share/';

const SLASH = 0x2f;

/**
 * Whether `s` starts with `$share/`: String.prototype.startsWith is not ES5.1, and
 * lastIndexOf(prefix, 0) compares at index 0 only (indexOf would search the whole string).
 */
export function isShared(s: string): boolean {
  return s.charCodeAt(0) === 0x24 && s.lastIndexOf(SHARED_PREFIX, 0) === 0;
}
const PLUS = 0x2b;
const HASH = 0x23;

/** What is wrong with a topic name or filter; stable, for programs to branch on. */
export type TopicProblemKind =
  | 'empty'
  | 'nul'
  | 'lone-surrogate'
  | 'too-long'
  | 'wildcard-in-name'
  | 'plus-placement'
  | 'hash-placement'
  | 'share-group-empty'
  | 'share-group-wildcard'
  | 'share-filter-missing';

/**
 * One problem in a topic name or filter. `index` is the UTF-16 index in the string where it
 * was found (for 'too-long': the first character past the 65,535-byte limit; -1 for 'empty').
 */
export interface TopicProblem {
  kind: TopicProblemKind;
  index: number;
  message: string;
}

/**
 * The typed error validateTopicName/validateTopicFilter throw. `code` and `reasonCode` as on
 * every MqttError (0x90 Topic Name invalid, 0x8F Topic Filter invalid); `kind` and `index` say
 * what is wrong and where in the string; `offset` stays the byte offset in the packet, if known.
 */
export class TopicError extends MqttError {
  declare readonly kind: TopicProblemKind;
  declare readonly index: number;
  constructor(code: string, problem: TopicProblem, reasonCode: number, offset: number) {
    super(code, problem.message, reasonCode, offset);
    this.kind = problem.kind;
    this.index = problem.index;
  }
}

/**
 * Checks a topic name (what PUBLISH carries, a will topic, a response topic): at least one
 * character, no `+` or `#`, no U+0000, no lone surrogate, at most 65,535 UTF-8 bytes. One pass,
 * no allocation when the name is valid. Control characters and non-characters are allowed: the
 * spec says SHOULD NOT, not MUST NOT [MQTT-1.5.4].
 */
export function checkTopicName(topic: string): TopicProblem | null {
  return check(topic, false);
}

/**
 * Checks a topic filter (what SUBSCRIBE and UNSUBSCRIBE carry): the name rules without the
 * wildcard ban, `+` filling a whole level [MQTT-4.7.1-2], `#` filling the last level
 * [MQTT-4.7.1-1]. `$share/{group}/{filter}` is checked as a shared subscription: a non-empty
 * group without `/`, `+` or `#`, then a non-empty topic filter [MQTT-4.8.2-1, MQTT-4.8.2-2].
 */
export function checkTopicFilter(filter: string): TopicProblem | null {
  return check(filter, true);
}

/** Names and filters share one pass: the rules differ only at `+`, `#` and `$share/`. */
function check(s: string, filter: boolean): TopicProblem | null {
  const what = filter ? 'topic filter' : 'topic name';
  const n = s.length;
  if (n === 0) return { kind: 'empty', index: -1, message: `${what} is empty` };
  let i = 0;
  // A shared filter's group name is s[SHARED_PREFIX.length, group): no wildcards there.
  let group = -1;
  if (filter && isShared(s)) {
    i = SHARED_PREFIX.length;
    group = s.indexOf('/', i);
    if (group < 0) group = n;
    if (group === i) return problem('share-group-empty', i, '$share group is empty');
  }
  let bytes = i;
  let levelStart = group + 1;
  for (; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) {
      if (c === PLUS || c === HASH) {
        if (i < group) return problem('share-group-wildcard', i, `$share group holds '${s[i]}'`);
        if (!filter) return problem('wildcard-in-name', i, `topic name holds wildcard '${s[i]}'`);
        if (i !== levelStart || (c === PLUS ? i + 1 < n && s.charCodeAt(i + 1) !== SLASH : i !== n - 1)) {
          return c === PLUS
            ? problem('plus-placement', i, `'+' must fill a whole level`)
            : problem('hash-placement', i, `'#' must fill the last level`);
        }
      } else if (c === SLASH) levelStart = i + 1;
      else if (c === 0) return problem('nul', i, `${what} holds U+0000`);
      bytes += 1;
    } else {
      const w = wideBytes(s, i, n, c);
      if (w < 0) return problem('lone-surrogate', i, `${what} holds a lone surrogate`);
      if (w === 4) i++;
      bytes += w;
    }
    if (bytes > MAX_TOPIC_BYTES) {
      const total = utf8ByteLength(s);
      return problem(
        'too-long',
        i,
        `${what} is ${total < 0 ? 'over 65,535' : total} UTF-8 bytes, limit 65,535`,
      );
    }
  }
  if (group >= n - 1) return problem('share-filter-missing', n, '$share filter missing');
  return null;
}

/** Why `topic` is not a valid topic name, or null when it is (see checkTopicName). */
export function topicNameProblem(topic: string): string | null {
  const p = checkTopicName(topic);
  return p === null ? null : p.message;
}

/** Why `filter` is not a valid topic filter, or null when it is (see checkTopicFilter). */
export function topicFilterProblem(filter: string): string | null {
  const p = checkTopicFilter(filter);
  return p === null ? null : p.message;
}

/**
 * Throws a TopicError (code TOPIC_NAME_INVALID, reason 0x90 Topic Name invalid) unless `topic`
 * is a valid topic name. `offset`: where the string starts in the packet, when known.
 */
export function validateTopicName(topic: string, offset = -1): void {
  const p = checkTopicName(topic);
  if (p !== null) throw new TopicError('TOPIC_NAME_INVALID', p, 0x90, offset);
}

/**
 * Throws a TopicError (code TOPIC_FILTER_INVALID, reason 0x8F Topic Filter invalid) unless
 * `filter` is a valid topic filter.
 */
export function validateTopicFilter(filter: string, offset = -1): void {
  const p = checkTopicFilter(filter);
  if (p !== null) throw new TopicError('TOPIC_FILTER_INVALID', p, 0x8f, offset);
}

export interface SharedFilter {
  group: string;
  filter: string;
}

/**
 * Splits `$share/{group}/{filter}`; null when `filter` is not a shared subscription or the
 * group or the inner filter is empty. Does not validate the group's characters or the inner
 * filter: checkTopicFilter does.
 */
export function splitShared(filter: string): SharedFilter | null {
  if (!isShared(filter)) return null;
  const slash = filter.indexOf('/', SHARED_PREFIX.length);
  if (slash <= SHARED_PREFIX.length || slash === filter.length - 1) return null;
  return { group: filter.slice(SHARED_PREFIX.length, slash), filter: filter.slice(slash + 1) };
}

/** UTF-8 bytes of the non-ASCII unit `c` at `i`: 2, 3, 4 (a surrogate pair) or -1 (lone). */
function wideBytes(s: string, i: number, n: number, c: number): number {
  if (c < 0x800) return 2;
  if (c < 0xd800 || c > 0xdfff) return 3;
  if (c > 0xdbff || i + 1 >= n) return -1;
  const d = s.charCodeAt(i + 1);
  return d >= 0xdc00 && d <= 0xdfff ? 4 : -1;
}

function problem(kind: TopicProblemKind, index: number, text: string): TopicProblem {
  return { kind, index, message: `${text} at character ${index}` };
}
