/**
 * Every violation the codec detects. `reasonCode` is the MQTT 5 reason code a peer should
 * send (0x81 malformed, 0x82 protocol error, 0x95 packet too large, ...); `offset` is the byte
 * offset in the packet (from its first fixed-header byte) where the problem was found, or -1
 * when it is not about received bytes (encoding). `code` is stable for programs to test.
 *
 * Inside the codec reason codes are written as numbers (0x81, 0x82, 0x84, 0x8f, 0x90, 0x95),
 * not `ReasonCode.X`: a bundler inlines no property of an object, and each such read costs
 * bundle bytes. The code string next to each says which it is.
 */
export class MqttError extends Error {
  // Fields are declared and assigned in the constructor, not as class fields: an ES2020 bundle
  // lowers class fields to a defineProperty helper call each (bigger and slower).
  declare readonly code: string;
  declare readonly reasonCode: number;
  declare readonly offset: number;

  /** An empty `message` reads the code as words ('TOPIC_NAME_INVALID': 'topic name invalid'). */
  constructor(code: string, message: string, reasonCode: number = 0x81, offset = -1) {
    const text = message || code.toLowerCase().replace(/_/g, ' ');
    const full = offset >= 0 ? `${text} (at byte ${offset})` : text;
    super(full);
    // Lowered to ES5 (dist/codec.es5.js) `super()` is `Error.call(this)`, which returns a new
    // plain Error: the instance is then made from the subclass's prototype (ES5.1 has no
    // Object.setPrototypeOf), so `instanceof` and subclasses (TopicError) still hold.
    const self: this = this instanceof MqttError ? this : Object.create(new.target.prototype);
    self.message = full;
    self.name = 'MqttError';
    (self as { code: string }).code = code;
    (self as { reasonCode: number }).reasonCode = reasonCode;
    (self as { offset: number }).offset = offset;
    // biome-ignore lint/correctness/noConstructorReturn: the ES5 form's instance (above)
    return self;
  }
}
