export { decode } from './decoder.ts';
export { encode, encodedLength, encodeInto, MAX_REMAINING_LENGTH, PacketWriter } from './encoder.ts';
export * from './errors.ts';
export * from './packets.ts';
export { MAX_PACKET_SIZE, PacketParser, type PacketParserOptions } from './parser.ts';
export * from './reason-codes.ts';
export * from './topic.ts';
export { utf8ByteLength, utf8Encode, utf8Read, utf8Write } from './utf8.ts';
