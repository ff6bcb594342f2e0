export { crc32c } from './crc32c.ts';
export type { DurableEntry, DurableQueueStats, RecoveryStats } from './durable-queue.ts';
export { DurableQueue } from './durable-queue.ts';
export type { DurableQueueErrorCode } from './errors.ts';
export { DurableQueueError } from './errors.ts';
export type { DropReason, DurableQueueEvent } from './events.ts';
export type { DurableQueueOptions, FsyncPolicy } from './options.ts';
