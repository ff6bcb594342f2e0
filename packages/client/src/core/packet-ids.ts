import { MqttError, ReasonCode } from '@mqtt-edge/codec';

/**
 * Packet identifiers 1..65535. An id stays taken until its flow completes, across reconnects,
 * so a new PUBLISH never reuses the id of one the server may still hold. A Set rather than a
 * 64 KiB table: an idle client holds nothing, a busy one as much as it has in flight.
 */
export class PacketIds {
  private used: Set<number> | null = null;
  private next = 1;

  allocate(): number {
    const used = (this.used ??= new Set());
    if (used.size >= 65535)
      throw new MqttError(
        'PACKET_IDS_EXHAUSTED',
        'all 65,535 packet ids are in flight',
        ReasonCode.QuotaExceeded,
      );
    let id = this.next;
    while (used.has(id)) id = id === 65535 ? 1 : id + 1;
    used.add(id);
    this.next = id === 65535 ? 1 : id + 1;
    return id;
  }

  release(id: number): void {
    this.used?.delete(id);
  }

  get count(): number {
    return this.used?.size ?? 0;
  }
}
