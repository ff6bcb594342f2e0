/** What went wrong with one run of bytes between two 0x00 delimiters (or one text line). */
export type FrameErrorKind =
  | 'crc' // decoded frame's CRC-32C does not match
  | 'cobs' // run is not valid COBS (a code byte points past the delimiter)
  | 'oversize' // run longer than the frame limit without a delimiter: discarded up to the next 0x00
  | 'short' // decoded frame shorter than header + 1 body byte + CRC
  | 'body' // CBOR body not decodable, or decodable but not the schema of its type
  | 'unknown-type' // type byte not one of HELLO/DATA/ACK/CMD/RESULT (skipped, for forward compatibility)
  | 'line-too-long' // text mode: line longer than the limit, discarded up to the next newline
  | 'line-syntax' // text mode: line is not JSON / key=value
  | 'line-value'; // text mode: parsed, but a value is not a finite number or a name is not allowed

/**
 * A rejected frame or line. Never thrown by the decoders (they count and carry on); handed to an
 * `onError` callback so a caller can log what, and where: `offset` is the stream byte offset of
 * the first byte of the offending run (or line), counted from the decoder's creation.
 */
export class SerialFrameError extends Error {
  override readonly name = 'SerialFrameError';
  constructor(
    readonly kind: FrameErrorKind,
    message: string,
    readonly offset: number = -1,
    /**
     * For 'body' and 'unknown-type' errors, the frame passed its CRC, so its header is what the
     * sender sent: the type byte, the seq, and the boot id when the body had a valid `b`. An
     * agent uses it to acknowledge (and so retire) an intact DATA it will never accept, which
     * would otherwise be retransmitted until it fell out of the device's ring.
     */
    readonly header?: { typeCode: number; seq: number; bootId?: number },
  ) {
    super(offset >= 0 ? `${kind}: ${message} (stream byte ${offset})` : `${kind}: ${message}`);
  }
}
