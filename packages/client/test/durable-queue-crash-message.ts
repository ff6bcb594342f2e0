import type { OutboxMessage } from '../src/core/outbox.ts';

/** The message the crash child stores for counter k: content a reader can check from k alone. */
export function crashMessage(k: number): OutboxMessage {
  const body = `reading-${k}-`.padEnd(60 + (k % 90), String.fromCharCode(97 + (k % 26)));
  return {
    topic: `dev/${k % 16}/temp`,
    payload: new Uint8Array(Buffer.from(body)),
    qos: 1,
    retain: false,
    properties: k % 3 === 0 ? { userProperties: [['msg-id', `dev:${k}`]] } : undefined,
  };
}
