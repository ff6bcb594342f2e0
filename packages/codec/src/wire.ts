/** Small wire-format helpers the encoder and the properties share. */
import { MqttError } from './errors.ts';
import { ReasonCode } from './reason-codes.ts';

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
