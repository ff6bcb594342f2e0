import { MqttError, ReasonCode } from '@mqtt-edge/codec';

/** Ids a caller holds: in-flight publishes, pending subscribes (a Map or Set fits). */
export interface IdHolder {
  has(id: number): boolean;
  readonly size: number;
}

/**
 * A free packet identifier (1..65535) at or after `next`. An id stays taken until its flow
 * completes, across reconnects, so a new PUBLISH never reuses the id of one the server may still
 * hold. Which ids are taken is the caller's maps, asked rather than mirrored in a set of ours
 * (a hash insert and delete less per QoS 1 message, and no closure or set per session). The
 * caller records the id before it asks for the next one and continues from `id % 65535 + 1`.
 */
export function allocatePacketId(next: number, a: IdHolder, b: IdHolder | null): number {
  if (a.size + (b === null ? 0 : b.size) >= 65535)
    throw new MqttError(
      'PACKET_IDS_EXHAUSTED',
      'all 65,535 packet ids are in flight',
      ReasonCode.QuotaExceeded,
    );
  let id = next;
  while (a.has(id) || b?.has(id) === true) id = id === 65535 ? 1 : id + 1;
  return id;
}
