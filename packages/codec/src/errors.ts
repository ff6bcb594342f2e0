import { ReasonCode } from './reason-codes.ts';

/**
 * Every violation the codec detects. `reasonCode` is the MQTT 5 reason code a peer should
 * send (0x81 malformed, 0x82 protocol error, 0x95 packet too large, ...); `offset` is the byte
 * offset in the packet (from its first fixed-header byte) where the problem was found, or -1
 * when it is not about received bytes (encoding). `code` is stable for programs to test.
 */
export class MqttError extends Error {
  override readonly name = 'MqttError';
  constructor(
    readonly code: string,
    message: string,
    readonly reasonCode: number = ReasonCode.MalformedPacket,
    readonly offset: number = -1,
  ) {
    // codes read as messages ('TOPIC_NAME_INVALID': 'topic name invalid') to keep the bundle small
    const text = message || code.toLowerCase().replace(/_/g, ' ');
    super(offset >= 0 ? `${text} (at byte ${offset})` : text);
  }
}
