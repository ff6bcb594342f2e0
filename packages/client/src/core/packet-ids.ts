import { MqttError, ReasonCode } from '@mqtt-edge/codec';

/**
 * Packet identifiers 1..65535. An id stays taken until its flow completes, across reconnects,
 * so a new PUBLISH never reuses the id of one the server may still hold.
 */
export class PacketIds {
  private readonly used = new Uint8Array(65536);
  private next = 1;
  private inUse = 0;

  allocate(): number {
    if (this.inUse >= 65535)
      throw new MqttError(
        'PACKET_IDS_EXHAUSTED',
        'all 65,535 packet ids are in flight',
        ReasonCode.QuotaExceeded,
      );
    let id = this.next;
    while (this.used[id] === 1) id = id === 65535 ? 1 : id + 1;
    this.used[id] = 1;
    this.inUse++;
    this.next = id === 65535 ? 1 : id + 1;
    return id;
  }

  release(id: number): void {
    if (this.used[id] === 1) {
      this.used[id] = 0;
      this.inUse--;
    }
  }

  get count(): number {
    return this.inUse;
  }
}
