/** Small wire-format helpers the encoder and the properties share. */
import { MqttError } from './errors.ts';
import { ReasonCode } from './reason-codes.ts';
import { topicFilterProblem, topicNameProblem } from './topic.ts';

/**
 * UTF-8 bytes of an MQTT string, checked as the spec requires of a sender: no U+0000, no lone
 * surrogate, at most 65,535 bytes. Throws MqttError, so a packet is never written half-valid.
 */
export function stringLength(s: string, what: string): number {
  if (typeof s !== 'string') throw new MqttError('STRING_INVALID', `${what} must be a string`, 0x81);
  const n = s.length;
  let bytes = n;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) {
      if (c === 0) throw new MqttError('STRING_INVALID', `${what} holds U+0000`, ReasonCode.MalformedPacket);
    } else if (c < 0x800) bytes += 1;
    else if (c >= 0xd800 && c <= 0xdfff) {
      const d = s.charCodeAt(i + 1);
      if (c > 0xdbff || !(d >= 0xdc00 && d <= 0xdfff))
        throw new MqttError('STRING_INVALID', `${what} holds a lone surrogate`, ReasonCode.MalformedPacket);
      i++;
      bytes += 2; // 4 bytes for 2 UTF-16 units
    } else bytes += 2;
  }
  if (bytes > 0xffff)
    throw new MqttError(
      'STRING_TOO_LONG',
      `${what} is ${bytes} bytes, over 65,535`,
      ReasonCode.MalformedPacket,
    );
  return bytes;
}

/**
 * UTF-8 bytes of a topic name (`filter` false) or filter, validated in the same single pass
 * (wildcard placement, U+0000, lone surrogates, length). The slower string checks of topic.ts
 * run only to word an error, and for `$share/` filters.
 */
export function topicLength(s: string, filter: boolean): number {
  // A gateway publishes to and subscribes with the same few topics: remember the verdicts.
  const cache = filter ? filterLengths : nameLengths;
  const known = cache.get(s);
  if (known !== undefined) return known;
  const bytes = measureTopic(s, filter);
  if (cache.size >= 256) cache.clear();
  cache.set(s, bytes);
  return bytes;
}

const nameLengths = new Map<string, number>();
const filterLengths = new Map<string, number>();

function measureTopic(s: string, filter: boolean): number {
  if (typeof s !== 'string')
    return topicError(filter, filter ? 'topic filter must be a string' : 'topic must be a string');
  const n = s.length;
  let bytes = n;
  let bad = n === 0;
  let levelStart = 0;
  for (let i = 0; i < n && !bad; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) {
      if (c === 0x2f) levelStart = i + 1;
      else if (c === 0x2b || c === 0x23) {
        if (!filter || i !== levelStart) bad = true;
        else if (c === 0x23) bad = i !== n - 1;
        else bad = i + 1 < n && s.charCodeAt(i + 1) !== 0x2f;
      } else if (c === 0) bad = true;
    } else if (c < 0x800) bytes += 1;
    else if (c >= 0xd800 && c <= 0xdfff) {
      const d = s.charCodeAt(i + 1);
      if (c > 0xdbff || !(d >= 0xdc00 && d <= 0xdfff)) bad = true;
      i++;
      bytes += 2;
    } else bytes += 2;
  }
  if (
    bad ||
    bytes > 0xffff ||
    (filter && s.charCodeAt(0) === 0x24 && s.startsWith('$share/') && topicFilterProblem(s) !== null)
  )
    return topicError(filter, (filter ? topicFilterProblem(s) : topicNameProblem(s)) ?? 'invalid topic');
  return bytes;
}

function topicError(filter: boolean, message: string): never {
  throw filter
    ? new MqttError('TOPIC_FILTER_INVALID', message, ReasonCode.TopicFilterInvalid)
    : new MqttError('TOPIC_NAME_INVALID', message, ReasonCode.TopicNameInvalid);
}
