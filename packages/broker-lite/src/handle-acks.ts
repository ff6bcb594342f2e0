/**
 * PUBACK, PUBREC, PUBREL, PUBCOMP: the QoS 1 and QoS 2 flows towards the client (in-flight
 * window, queue pump) and the release of QoS 2 messages received from it.
 */
import { type PubAckLikePacket, ReasonCode } from '@mqtt-edge/codec';
import type { Broker } from './broker.ts';
import type { Connection } from './connection.ts';
import { pump } from './deliver.ts';
import type { Delivery } from './message.ts';
import type { Session } from './session.ts';

const PUBREL = 0x62;
const PUBCOMP = 0x70;

/**
 * Returns true when the ack released bytes for this same connection (the next window of its
 * queue, a PUBREL) that should go out at the end of the chunk being read, not the turn.
 */
export function handleAcks(
  conn: Connection,
  p: PubAckLikePacket<'puback' | 'pubrec' | 'pubrel' | 'pubcomp'>,
): boolean {
  const b = conn.broker;
  const s = conn.session;
  if (s === null) return false;
  const pid = p.packetId;
  switch (p.type) {
    case 'puback': {
      const d = s.inflight.get(pid);
      if (d === undefined || d.qos !== 1) return false; // unknown ids are ignored, as Mosquitto does
      return complete(b, s, d);
    }
    case 'pubrec': {
      const d = s.inflight.get(pid);
      if (d === undefined || d.qos !== 2) {
        conn.sendAck(PUBREL, pid, ReasonCode.PacketIdentifierNotFound);
        return false;
      }
      if ((p.reasonCode ?? 0) >= 0x80) {
        // MQTT 5: the receiver refused it; the flow ends here.
        s.inflight.delete(pid);
        if (s.persistent && b.persist !== null) b.persist.queueDel(s, d);
        pump(b, s);
        return false;
      }
      if (d.state === 0) {
        d.state = 1;
        if (s.persistent && b.persist !== null) b.persist.queueReleased(s, d, conn);
      }
      conn.sendAck(PUBREL, pid, 0);
      return true;
    }
    case 'pubcomp': {
      const d = s.inflight.get(pid);
      if (d === undefined || d.state !== 1) return false;
      return complete(b, s, d);
    }
    case 'pubrel': {
      const seen = s.incomingQos2;
      if (seen?.delete(pid)) {
        if (s.persistent && b.persist !== null) {
          // The PUBCOMP frees the id for the client: it waits for the record that frees it here,
          // or a crash before that commit would take the client's next QoS 2 message under this
          // id for a retransmission and drop it (issue 18.4: the window made that a 50 ms gap).
          b.persist.incomingDel(s, pid);
          b.persist.deferAck(conn, PUBCOMP, pid, 0);
        } else conn.sendAck(PUBCOMP, pid, 0);
      } else if (conn.pendingAcks > 0 && b.persist !== null)
        // PUBCOMPs keep the order of their PUBRELs
        b.persist.deferAck(conn, PUBCOMP, pid, ReasonCode.PacketIdentifierNotFound);
      else conn.sendAck(PUBCOMP, pid, ReasonCode.PacketIdentifierNotFound);
      return false;
    }
  }
}

/** `d` reached its receiver: out of the window and the store, the queue moves up. */
function complete(b: Broker, s: Session, d: Delivery): boolean {
  s.inflight.delete(d.pid);
  if (s.persistent && b.persist !== null) b.persist.queueDel(s, d);
  const more = s.queueLength > 0;
  pump(b, s);
  return more;
}

/**
 * An in-process peer (internal-client.ts) is done with delivery `pid`, at any QoS: a function
 * call is its own exactly-once, so QoS 2 needs no PUBREC / PUBREL / PUBCOMP round.
 */
export function settleDelivery(conn: Connection, pid: number): void {
  const s = conn.session;
  if (s === null || s.inflightCount === 0) return;
  const d = s.inflight.get(pid);
  if (d !== undefined) complete(conn.broker, s, d);
}
