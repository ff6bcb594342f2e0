export { ConnackError, RequestError } from './errors.ts';
export type {
  ClosedEvent,
  ConnectedEvent,
  ErrorEvent,
  MessageEvent,
  PublishedEvent,
  SessionEvent,
  SubackEvent,
  UnsubackEvent,
} from './events.ts';
export { isSyncOutbox, MemoryOutbox, type MemoryOutboxOptions, type SyncOutbox } from './memory-outbox.ts';
export { type ResolvedOptions, resolveOptions, type SessionOptions, type WillOptions } from './options.ts';
export {
  type Outbox,
  type OutboxDropPolicy,
  type OutboxEntry,
  OutboxFullError,
  type OutboxMessage,
  type OutboxStats,
  type PutPromise,
} from './outbox.ts';
export { ClientSession, type PublishTicket, type SessionState, setBridgeBit } from './session.ts';
