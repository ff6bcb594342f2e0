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

/**
 * Remembered bytes of topic names [0] and filters [1]: dictionaries without a prototype, as fast
 * in V8 as a Map (bench/RESULTS.md, "engines") and ES5.1, which has no Map (Duktape). Only
 * '__proto__' is not stored: where it is a property of every object (Espruino) storing it would
 * set the dictionary's prototype.
 */
const tables: Array<Record<string, Uint8Array | undefined>> = [Object.create(null), Object.create(null)];
const held = [0, 0];

/**
 * The UTF-8 bytes of a valid topic name (`filter` false) or filter; throws a TopicError (0x90
 * or 0x8F) otherwise. A gateway publishes to and subscribes with the same few topics, so
 * verdicts and bytes are remembered (256 of each kind at most): a repeat costs one lookup.
 */
export function topicBytes(s: string, filter: boolean): Uint8Array {
  // Not a string: looked up and validated as '' (never stored), so refused as empty.
  if (typeof s !== 'string') s = '';
  const k = filter ? 1 : 0;
  const known = tables[k][s];
  if (known !== undefined && known !== null) return known;
  if (filter) validateTopicFilter(s);
  else validateTopicName(s);
  const bytes = utf8Encode(s);
  if (s !== '__proto__') {
    if (++held[k] > 256) {
      tables[k] = Object.create(null);
      held[k] = 1;
    }
    tables[k][s] = bytes;
  }
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
