/**
 * Every way broker-lite knowingly answers otherwise than Mosquitto 2.0 (Debian's) in the
 * differential suite, with the reason. The suite fails on any difference not listed here, and
 * on an entry that no longer shows (so the list stays true). docs/mosquitto-differences.md is
 * rendered from this file (`npm run docs:differences`; a test checks it is in sync).
 *
 * status:
 * - deliberate: broker-lite differs on purpose, for the reason given;
 * - pending 15.2 / pending 15.3: issue 15 part 2 (configs that do not carry over) or part 3
 *   (MQTT 5 parity) changes this; the entry goes when that work lands.
 */

export type DifferenceStatus = 'deliberate' | 'pending 15.2' | 'pending 15.3';

export interface ScenarioLines {
  /** The scenario's id (differential groups: `group.name`). */
  id: string;
  /** Transcript lines only Mosquitto's run has (`STEP CLIENT: OBSERVATION`). */
  mosquitto: string[];
  /** Transcript lines only broker-lite's run has. */
  brokerLite: string[];
}

export interface Difference {
  id: string;
  status: DifferenceStatus;
  /** One line: what differs. */
  title: string;
  /** Why (deliberate), or what the pending work changes. */
  reason: string;
  /**
   * A property of a packet type that differs wherever the packet is sent: left out of every
   * comparison. `mosquitto` and `brokerLite` say what each sends.
   */
  property?: {
    packets: string[];
    name: string;
    /** Masked only with one of these values (JSON-equal); any value when left out. */
    values?: unknown[];
    mosquitto: string;
    brokerLite: string;
  };
  /** Exact lines of scenarios. */
  scenarios?: ScenarioLines[];
}

const ALL_PACKETS = ['connack', 'puback', 'pubrec', 'pubcomp', 'suback', 'unsuback', 'disconnect'];

export const DIFFERENCES: Difference[] = [
  {
    id: 'reason-strings',
    status: 'deliberate',
    title: 'broker-lite says why in a reason string; Mosquitto sends none',
    reason:
      'MQTT 5 lets a server add a human-readable Reason String to a refusal or an error, unless the client ' +
      'set Request Problem Information to 0 (which broker-lite honours). A device log that says ' +
      '"anonymous access is off" beats a bare 0x87. Only the reason string differs, never the code.',
    property: {
      packets: ALL_PACKETS,
      name: 'reasonString',
      mosquitto: 'none',
      brokerLite: 'a short explanation on refusals and errors, e.g. "bad credentials"',
    },
  },
  {
    id: 'connack-maximum-packet-size',
    status: 'deliberate',
    title: 'broker-lite always advertises its Maximum Packet Size (268,368,900)',
    reason:
      'broker-lite stores and forwards every message as an MQTT 5 PUBLISH, so it accepts packets only up ' +
      "to MQTT's maximum less room for the properties it may add (MAX_ACCEPTED_PACKET, docs/DESIGN.md). " +
      'A server with a limit below the protocol maximum must say so in CONNACK; Mosquitto has none without ' +
      'max_packet_size. With max_packet_size set both advertise it (scenario max-packet-size.v5).',
    property: {
      packets: ['connack'],
      name: 'maximumPacketSize',
      values: [268_368_900],
      mosquitto: 'absent unless max_packet_size is set',
      brokerLite: '268368900 unless max_packet_size is set lower',
    },
  },
  {
    id: 'connack-receive-maximum',
    status: 'pending 15.3',
    title: 'Receive Maximum in CONNACK: Mosquitto 20 (max_inflight_messages), broker-lite 65,535',
    reason:
      'Issue 15 part 3: broker-lite advertises and holds 65,535 by default; the bounded default tied to ' +
      "what the broker wants to hold, with 0x93 beyond it, is that part's work.",
    property: {
      packets: ['connack'],
      name: 'receiveMaximum',
      values: [20, 65_535],
      mosquitto: 'max_inflight_messages (default 20)',
      brokerLite: '65535',
    },
  },
];
