export * from './errors.ts';
export * from './packets.ts';
export * from './reason-codes.ts';
export * from './topic.ts';
export { utf8ByteLength, utf8Encode, utf8Read, utf8Write } from './utf8.ts';
