export type DurableQueueErrorCode =
  /** Another live process holds the queue's lock file. */
  | 'LOCKED'
  /** put() after close(). */
  | 'CLOSED'
  /** A write or fsync failed; the queue refuses further puts until reopened (recovery repairs it). */
  | 'FAILED'
  /** The directory holds a queue of another format version, or is not a queue. */
  | 'FORMAT'
  /** One message would not fit in a record (maxRecordBytes). */
  | 'TOO_LARGE';

/** Every failure of the durable queue other than a full queue (OutboxFullError) carries a code. */
export class DurableQueueError extends Error {
  override readonly name = 'DurableQueueError';
  constructor(
    readonly code: DurableQueueErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
