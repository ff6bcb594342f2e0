export { bodyObject, decodeBody, validateBody } from './body.ts';
export * from './cobs.ts';
export { crc32c, crc32cUpdate } from './crc32c.ts';
export { FrameDecoder, type FrameDecoderOptions, type FrameDecoderStats } from './decoder.ts';
export { encodeFrame, encodeRawFrame } from './encode.ts';
export * from './errors.ts';
export * from './frames.ts';
// Modbus RTU (issue 20): framing, CRC-16/MODBUS, register values, the master on a line.
export * from './modbus/index.ts';
export * from './text.ts';
export {
  isName,
  isText,
  isValue,
  MAX_COMMANDS,
  MAX_NAME_LENGTH,
  MAX_OPTIONS,
  MAX_SENSORS,
  MAX_TEXT_LENGTH,
} from './validate.ts';
