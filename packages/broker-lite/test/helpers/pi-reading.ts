/**
 * The Pi chain's reading as the agent publishes it (issue 18.4's flash rows): a topic per
 * sensor, a 122-byte JSON payload, a content type and a `msg-id` user property. Shared by the
 * compact-record tests and bench/flash-offline.ts, so both store the same message.
 */
import type { PublishPacket } from '@mqtt-edge/codec';

export const SENSORS = ['temp', 'hum', 'press', 'lux'];

export function readingPayload(i: number): Buffer {
  return Buffer.from(
    JSON.stringify({
      id: `kitchen:1255712665:${i}:0`,
      device: 'kitchen',
      sensor: 'temp',
      value: 20.79,
      unit: 'Cel',
      ts: 7202,
      at: 1796638224795,
    }),
  );
}

/** Reading `i` (its sensor `i % 4`) as a QoS 1 MQTT 5 PUBLISH under `packetId`. */
export function readingPublish(i: number, packetId: number): PublishPacket {
  return {
    type: 'publish',
    topic: `demo/kitchen/${SENSORS[i % 4]}`,
    payload: readingPayload(i),
    qos: 1,
    retain: false,
    dup: false,
    packetId,
    properties: {
      contentType: 'application/json',
      userProperties: [['msg-id', `kitchen:1255712665:${i}:${i % 4}`]],
    },
  };
}
