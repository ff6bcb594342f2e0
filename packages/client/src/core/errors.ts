import { ConnectReturnCode, type ProtocolVersion, ReasonCode } from '@mqtt-edge/codec';

const RETURN_CODE_TEXT: Record<number, string> = {
  [ConnectReturnCode.UnacceptableProtocolVersion]: 'unacceptable protocol version',
  [ConnectReturnCode.IdentifierRejected]: 'identifier rejected',
  [ConnectReturnCode.ServerUnavailable]: 'server unavailable',
  [ConnectReturnCode.BadUserNameOrPassword]: 'bad user name or password',
  [ConnectReturnCode.NotAuthorized]: 'not authorized',
};

/** 3.1.1 return codes mapped to the 5.0 reason code with the same meaning. */
const RETURN_CODE_AS_REASON: Record<number, number> = {
  1: ReasonCode.UnsupportedProtocolVersion,
  2: ReasonCode.ClientIdentifierNotValid,
  3: ReasonCode.ServerUnavailable,
  4: ReasonCode.BadUserNameOrPassword,
  5: ReasonCode.NotAuthorized,
};

/**
 * The base of the core's errors. Lowered to ES5 (dist/client-core.es5.js) `super()` is
 * `Error.call(this)`, which returns a new plain Error: the instance is then made from the
 * subclass's prototype (ES5.1 has no Object.setPrototypeOf), so `instanceof`, getters and the
 * subclasses' fields (set after this constructor) still hold.
 */
export class CoreError extends Error {
  constructor(message: string) {
    super(message);
    const self: this = this instanceof CoreError ? this : Object.create(new.target.prototype);
    self.message = message;
    // biome-ignore lint/correctness/noConstructorReturn: the ES5 form's instance (above)
    return self;
  }
}

/**
 * The server refused the connection. 3.1/3.1.1: `returnCode` is the CONNACK return code (1..5)
 * and `reasonCode` its 5.0 equivalent; 5.0: `reasonCode` and `reasonString` are the server's.
 */
export class ConnackError extends CoreError {
  override readonly name = 'ConnackError';
  readonly code = 'CONNACK_REFUSED';
  readonly returnCode: number | undefined;
  readonly reasonCode: number;
  constructor(
    readonly protocolVersion: ProtocolVersion,
    code: number,
    readonly reasonString?: string,
  ) {
    const v5 = protocolVersion === 5;
    const text = v5
      ? `reason code 0x${code.toString(16)}`
      : (RETURN_CODE_TEXT[code] ?? 'unknown return code');
    super(`connection refused: ${text}${reasonString ? ` (${reasonString})` : ''}`);
    this.returnCode = v5 ? undefined : code;
    this.reasonCode = v5 ? code : (RETURN_CODE_AS_REASON[code] ?? ReasonCode.UnspecifiedError);
  }

  /** Refusals a retry may cure (server unavailable, busy, rate limits, quota). */
  get retryable(): boolean {
    return (
      this.reasonCode === ReasonCode.ServerUnavailable ||
      this.reasonCode === ReasonCode.ServerBusy ||
      this.reasonCode === ReasonCode.ConnectionRateExceeded ||
      this.reasonCode === ReasonCode.QuotaExceeded ||
      this.reasonCode === ReasonCode.UnspecifiedError ||
      this.reasonCode === ReasonCode.ImplementationSpecificError
    );
  }
}

/**
 * A publish, subscribe or unsubscribe the server answered with a failure reason code (5.0), or
 * one the client could not send as asked (QoS or retain the server does not support, too large).
 */
export class RequestError extends CoreError {
  override readonly name = 'RequestError';
  constructor(
    readonly code: string,
    message: string,
    readonly reasonCode: number,
    readonly reasonString?: string,
  ) {
    super(message);
  }
}
