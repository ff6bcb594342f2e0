export { encode, encodedLength, encodeInto, MAX_REMAINING_LENGTH, PacketWriter } from './encoder.ts';
export * from './errors.ts';
export * from './packets.ts';
export {
  DEFAULT_MAX_USER_PROPERTIES,
  decode,
  MAX_PACKET_SIZE,
  PacketParser,
  type PacketParserOptions,
} from './parser.ts';
export * from './reason-codes.ts';
export { SubscriptionIndex } from './subscription-index.ts';
export * from './topic.ts';
export { hasWildcard, matchTopic } from './topic-match.ts';
export { TopicStore } from './topic-store.ts';
export { utf8ByteLength, utf8Encode, utf8Read, utf8Write } from './utf8.ts';
