/**
 * The messages of fixtures/queue-v1 (a queue written by the code before issue 18.4, record format
 * 1), made again for comparison: `fixtures/make-queue-v1.ts` wrote the fixture from these.
 */
import type { OutboxMessage } from '../../src/core/outbox.ts';

export const V1_FIXTURE = {
  messages: 600,
  /** Acknowledged before the close: the persisted cursor. */
  acked: 50,
  segmentBytes: 64 << 10,
  /** storedAt of message i (1-based) is clock0 + i. */
  clock0: 1_765_000_000_000,
};

export function v1FixtureMessage(i: number): OutboxMessage {
  const text = `{"id":"dev${i % 3}:7:${i}:0","value":${(i * 0.37).toFixed(2)},"pad":"${'x'.repeat(i % 150)}"}`;
  const payload = new Uint8Array(Buffer.from(text));
  switch (i % 3) {
    case 0:
      // the agent's shape: JSON content type and a per-reading user property
      return {
        topic: `sensors/dev${i % 3}/temp`,
        payload,
        qos: 1,
        retain: false,
        properties: {
          contentType: 'application/json',
          payloadFormatIndicator: true,
          userProperties: [['msg-id', `dev0:7:${i}:0`]],
        },
      };
    case 1:
      return { topic: `sensors/dev1/hum`, payload, qos: 0, retain: true };
    default:
      return {
        topic: `sensors/dev2/${i % 5}`,
        payload,
        qos: 2,
        retain: false,
        properties: { messageExpiryInterval: 3600 + i, correlationData: new Uint8Array([i & 0xff, 1, 2]) },
      };
  }
}
