/** Small wire-format helpers the encoder and the properties share. */
import { MqttError } from './errors.ts';
import { validateTopicFilter, validateTopicName } from './topic.ts';
import { utf8ByteLength, utf8Encode } from './utf8.ts';

/**
 * UTF-8 bytes of an MQTT string, checked as the spec requires of a sender: no U+0000, no lone
 * surrogate, at most 65,535 bytes. Throws MqttError, so a packet is never written half-valid.
 */
export function stringLength(s: string, what: string): number {
  const n = typeof s === 'string' && s.indexOf('\0') < 0 ? utf8ByteLength(s) : -1;
  if (n < 0) throw new MqttError('STRING_INVALID', what, 0x81);
  if (n > 0xffff) throw new MqttError('STRING_TOO_LONG', what, 0x81);
  return n;
}

const names = new Map<string, Uint8Array>();
const filters = new Map<string, Uint8Array>();

/**
 * The UTF-8 bytes of a valid topic name (`filter` false) or filter; throws a TopicError (0x90
 * or 0x8F) otherwise. A gateway publishes to and subscribes with the same few topics, so
 * verdicts and bytes are remembered (256 of each kind at most): a repeat costs one lookup.
 */
export function topicBytes(s: string, filter: boolean): Uint8Array {
  const cache = filter ? filters : names;
  const known = cache.get(s);
  if (known !== undefined) return known;
  if (filter) validateTopicFilter(typeof s === 'string' ? s : '');
  else validateTopicName(typeof s === 'string' ? s : '');
  const bytes = utf8Encode(s);
  if (cache.size >= 256) cache.clear();
  cache.set(s, bytes);
  return bytes;
}

let lastName = '';
let lastBytes: Uint8Array = new Uint8Array(0);

/** topicBytes for a topic name, remembering the last one. */
export function nameBytes(s: string): Uint8Array {
  if (s === lastName) return lastBytes;
  const bytes = topicBytes(s, false);
  lastName = s;
  lastBytes = bytes;
  return bytes;
}
