import { bodyObject, encodeBodyObject, validateBody } from './body.ts';
import { cobsEncodedLength, cobsEncodeInto } from './cobs.ts';
import { crc32c } from './crc32c.ts';
import { SerialFrameError } from './errors.ts';
import { CRC_SIZE, type Frame, HEADER_SIZE, MAX_FRAME_SIZE, TYPE_CODE } from './frames.ts';

// One scratch buffer for the unstuffed frame: encoding is synchronous, so it is never shared.
const scratch = new Uint8Array(MAX_FRAME_SIZE);

/**
 * The unstuffed frame: type, seq (big-endian), CBOR body, CRC-32C (little-endian) over all
 * preceding bytes. Throws `SerialFrameError` ('body' or 'oversize') for a frame that a decoder
 * would reject, so a bad frame is caught at the sender, not on the far side of a wire.
 */
export function encodeRawFrame(frame: Frame): Uint8Array {
  return encodeRaw(frame).slice();
}

function encodeRaw(frame: Frame): Uint8Array {
  if (!Number.isInteger(frame.seq) || frame.seq < 0 || frame.seq > 0xffff) {
    throw new SerialFrameError('body', `seq ${frame.seq} is not a 16-bit unsigned integer`);
  }
  // The wire-keyed object is validated by the decoder's own rules before it is encoded.
  const obj = bodyObject(frame);
  const check = validateBody(frame.type, frame.seq, obj);
  if (!check.ok) throw new SerialFrameError('body', check.error);
  const body = encodeBodyObject(obj);
  const len = HEADER_SIZE + body.length + CRC_SIZE;
  if (len > MAX_FRAME_SIZE) {
    throw new SerialFrameError('oversize', `${frame.type} frame is ${len} bytes, limit ${MAX_FRAME_SIZE}`);
  }
  scratch[0] = TYPE_CODE[frame.type];
  scratch[1] = frame.seq >>> 8;
  scratch[2] = frame.seq & 0xff;
  scratch.set(body, HEADER_SIZE);
  const crcAt = HEADER_SIZE + body.length;
  const crc = crc32c(scratch, 0, crcAt);
  scratch[crcAt] = crc & 0xff;
  scratch[crcAt + 1] = (crc >>> 8) & 0xff;
  scratch[crcAt + 2] = (crc >>> 16) & 0xff;
  scratch[crcAt + 3] = crc >>> 24;
  return scratch.subarray(0, len);
}

/** The bytes to write to the serial line: COBS(raw frame) followed by the 0x00 delimiter. */
export function encodeFrame(frame: Frame): Uint8Array {
  const raw = encodeRaw(frame);
  const out = new Uint8Array(cobsEncodedLength(raw) + 1);
  const n = cobsEncodeInto(raw, out);
  out[n] = 0;
  return out;
}
