/**
 * DISCONNECT from the client: a normal one discards the will, 0x04 asks for it; MQTT 5 may
 * change the session expiry here (but not from 0 to non-zero).
 */
import { type DisconnectPacket, ReasonCode } from '@mqtt-edge/codec';
import type { Connection } from './connection.ts';

export function handleDisconnect(conn: Connection, p: DisconnectPacket): void {
  const s = conn.session;
  const expiry = p.properties?.sessionExpiryInterval;
  if (s !== null && expiry !== undefined) {
    if (s.expiryInterval === 0 && expiry !== 0) {
      conn.gracefulDisconnect = true;
      conn.fail(ReasonCode.ProtocolError, 'session expiry cannot change from 0 at DISCONNECT');
      return;
    }
    s.expiryInterval = expiry;
  }
  conn.gracefulDisconnect = (p.reasonCode ?? 0) !== ReasonCode.DisconnectWithWillMessage;
  conn.close();
}
