export type DurableQueueErrorCode =
  /** Another live process holds the queue's lock file. */
  | 'LOCKED'
  /** put() after close(). */
  | 'CLOSED'
  /**
   * The file system (or the user's quota) is full: a write or fsync failed with ENOSPC / EDQUOT.
   * What the failed write left is cut back; the queue writes again by itself once there is room.
   */
  | 'NO_SPACE'
  /** A write or fsync failed for another reason (EIO, ...); retried like NO_SPACE. */
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

/** The code a failed write or fsync gets: a full disk is told apart, it is the common case. */
export function writeErrorCode(err: unknown): 'NO_SPACE' | 'FAILED' {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' ? 'NO_SPACE' : 'FAILED';
}
