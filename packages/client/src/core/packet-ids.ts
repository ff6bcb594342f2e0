import { MqttError, ReasonCode } from '@mqtt-edge/codec';

/**
 * Packet identifiers 1..65535. An id stays taken until its flow completes, across reconnects,
 * so a new PUBLISH never reuses the id of one the server may still hold. Which ids are taken is
 * the owner's maps (in-flight publishes, pending subscribes): asked, not mirrored in a set of
 * our own, which spared a hash insert and delete per QoS 1 message. The owner must record an id
 * before it allocates the next one.
 */
export class PacketIds {
  private next = 1;

  constructor(
    private readonly taken: (id: number) => boolean,
    private readonly takenCount: () => number,
  ) {}

  allocate(): number {
    if (this.takenCount() >= 65535)
      throw new MqttError(
        'PACKET_IDS_EXHAUSTED',
        'all 65,535 packet ids are in flight',
        ReasonCode.QuotaExceeded,
      );
    let id = this.next;
    while (this.taken(id)) id = id === 65535 ? 1 : id + 1;
    this.next = id === 65535 ? 1 : id + 1;
    return id;
  }
}
