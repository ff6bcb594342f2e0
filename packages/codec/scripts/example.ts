/** The README example: `npx tsx packages/codec/scripts/example.ts` from the repository root. */
import { encode, MqttError, PacketParser, PacketWriter } from '@mqtt-edge/codec';

// Encoding: one writer, one growable buffer; encode() returns a view valid until the next call.
const writer = new PacketWriter();
const bytes = writer.encode(
  {
    type: 'publish',
    topic: 'sensors/gw-01/temp',
    payload: Uint8Array.of(0x32, 0x31),
    qos: 1,
    retain: false,
    dup: false,
    packetId: 7,
  },
  5,
);
console.log('PUBLISH of', bytes.length, 'bytes'); // socket.write(bytes): copy it if it must outlive the next encode

// Decoding: feed whatever chunks the transport gives; packets come out whole, in order.
const parser = new PacketParser({ maxPacketSize: 64 * 1024 }); // version follows the CONNECT
try {
  parser.push(
    encode({ type: 'connect', protocolVersion: 5, clientId: 'gw-01', clean: true, keepalive: 30 }, 5),
    (p) => {
      console.log(p.type, parser.protocolVersion); // connect 5
    },
  );
} catch (err) {
  if (err instanceof MqttError) console.log(err.code, err.reasonCode, err.offset); // close with err.reasonCode
}
