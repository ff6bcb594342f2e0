import { MqttError } from './errors.ts';
import { ReasonCode } from './reason-codes.ts';
import { utf8ByteLength } from './utf8.ts';

/** MQTT strings carry a 16-bit length. */
export const MAX_TOPIC_BYTES = 65_535;

const SLASH = 0x2f;
const PLUS = 0x2b;
const HASH = 0x23;

/**
 * Why `topic` is not a valid topic name, or null when it is. Names are what PUBLISH carries:
 * at least one character, no `+` or `#`, no U+0000, well-formed, at most 65,535 UTF-8 bytes.
 */
export function topicNameProblem(topic: string): string | null {
  const n = topic.length;
  if (n === 0) return 'topic name is empty';
  for (let i = 0; i < n; i++) {
    const c = topic.charCodeAt(i);
    if (c === PLUS || c === HASH) return `topic name holds wildcard '${topic[i]}' at character ${i}`;
    if (c === 0) return `topic name holds U+0000 at character ${i}`;
  }
  return lengthProblem(topic, 'topic name');
}

/**
 * Why `filter` is not a valid topic filter, or null. `+` must fill a whole level; `#` must fill
 * the last level. `$share/{group}/{filter}` is checked as a shared subscription.
 */
export function topicFilterProblem(filter: string): string | null {
  const n = filter.length;
  if (n === 0) return 'topic filter is empty';
  let levelStart = 0;
  for (let i = 0; i < n; i++) {
    const c = filter.charCodeAt(i);
    if (c === SLASH) {
      levelStart = i + 1;
    } else if (c === PLUS) {
      const next = i + 1 < n ? filter.charCodeAt(i + 1) : SLASH;
      if (i !== levelStart || next !== SLASH) return `'+' must fill a whole level (character ${i})`;
    } else if (c === HASH) {
      if (i !== levelStart || i !== n - 1) return `'#' must be the last level, alone (character ${i})`;
    } else if (c === 0) {
      return `topic filter holds U+0000 at character ${i}`;
    }
  }
  const lengthIssue = lengthProblem(filter, 'topic filter');
  if (lengthIssue) return lengthIssue;
  if (filter.startsWith('$share/')) {
    const shared = splitShared(filter);
    if (shared === null) return "'$share/' needs a group name and a filter: $share/{group}/{filter}";
    const group = shared.group;
    for (let i = 0; i < group.length; i++) {
      const c = group.charCodeAt(i);
      if (c === PLUS || c === HASH) return `shared subscription group '${group}' holds a wildcard`;
    }
  }
  return null;
}

/** Throws a typed error (0x90 Topic Name invalid) unless `topic` is a valid topic name. */
export function validateTopicName(topic: string, offset = -1): void {
  const problem = topicNameProblem(topic);
  if (problem !== null)
    throw new MqttError('TOPIC_NAME_INVALID', problem, ReasonCode.TopicNameInvalid, offset);
}

/** Throws a typed error (0x8F Topic Filter invalid) unless `filter` is a valid topic filter. */
export function validateTopicFilter(filter: string, offset = -1): void {
  const problem = topicFilterProblem(filter);
  if (problem !== null)
    throw new MqttError('TOPIC_FILTER_INVALID', problem, ReasonCode.TopicFilterInvalid, offset);
}

export interface SharedFilter {
  group: string;
  filter: string;
}

/**
 * Splits `$share/{group}/{filter}`; null when `filter` is not a shared subscription or the
 * group or the inner filter is empty. Does not validate the inner filter.
 */
export function splitShared(filter: string): SharedFilter | null {
  if (!filter.startsWith('$share/')) return null;
  const slash = filter.indexOf('/', 7);
  if (slash <= 7 || slash === filter.length - 1) return null;
  return { group: filter.slice(7, slash), filter: filter.slice(slash + 1) };
}

function lengthProblem(s: string, what: string): string | null {
  // 3 bytes per UTF-16 unit is the worst case; skip the count for short strings
  if (s.length * 3 <= MAX_TOPIC_BYTES) {
    if (!hasLoneSurrogate(s)) return null;
    return `${what} holds a lone surrogate and has no UTF-8 form`;
  }
  const bytes = utf8ByteLength(s);
  if (bytes < 0) return `${what} holds a lone surrogate and has no UTF-8 form`;
  if (bytes > MAX_TOPIC_BYTES) return `${what} is ${bytes} bytes, over the 65,535-byte limit`;
  return null;
}

function hasLoneSurrogate(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdfff) return utf8ByteLength(s) < 0;
  }
  return false;
}
