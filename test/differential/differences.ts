/**
 * Every way broker-lite knowingly answers otherwise than Mosquitto 2.0 (Debian's) in the
 * differential suite, with the reason. The suite fails on any difference not listed here, and
 * on an entry that no longer shows (so the list stays true). docs/mosquitto-differences.md is
 * rendered from this file (`npm run docs:differences`; a test checks it is in sync).
 *
 * status: deliberate (broker-lite differs on purpose, for the reason given). Work in progress
 * that changes behaviour may add a status of its own while it lasts (issue 15 had two).
 */

export type DifferenceStatus = 'deliberate';

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
    title:
      'broker-lite always advertises its Maximum Packet Size (268,368,900, or less with message_size_limit)',
    reason:
      'broker-lite stores and forwards every message as an MQTT 5 PUBLISH, so it accepts packets only up ' +
      "to MQTT's maximum less room for the properties it may add (MAX_ACCEPTED_PACKET, docs/DESIGN.md). " +
      'With message_size_limit it refuses a packet that cannot fit the limit from its fixed header (the ' +
      'limit plus 66,560 bytes for the header, topic and properties) instead of reading it whole first. ' +
      'A server with a limit below the protocol maximum must say so in CONNACK; Mosquitto has none without ' +
      'max_packet_size. With max_packet_size set both advertise it (scenario max-packet-size.v5).',
    property: {
      packets: ['connack'],
      name: 'maximumPacketSize',
      // 66,660: message_size_limit 100 (the message-size-limit group).
      values: [268_368_900, 66_660],
      mosquitto: 'absent unless max_packet_size is set',
      brokerLite:
        '268368900, or message_size_limit + 66560 when that is lower, unless max_packet_size is set lower',
    },
  },
  {
    id: 'connack-receive-maximum',
    status: 'deliberate',
    title:
      'Receive Maximum in CONNACK at the default: Mosquitto 20, broker-lite 100 (both: max_inflight_messages)',
    reason:
      'Both brokers advertise max_inflight_messages as Receive Maximum and hold a client to it (0x93 beyond it, ' +
      "MQTT-3.3.4-9); only the default differs (see 'max_inflight_messages defaults to 100'). With it set, both " +
      'advertise the same figure (the max-inflight and max-queued groups).',
    property: {
      packets: ['connack'],
      name: 'receiveMaximum',
      values: [20, 100],
      mosquitto: 'max_inflight_messages (default 20)',
      brokerLite: 'max_inflight_messages (default 100; 65,535 when 0)',
    },
  },
  {
    id: 'subscribe-refused-when-hopeless',
    status: 'deliberate',
    title: 'SUBACK refuses a filter the ACL lets bring nothing; Mosquitto grants every SUBSCRIBE',
    reason:
      "Mosquitto 2.0 grants every filter and checks each delivery; broker-lite checks each delivery the same way, so a granted filter brings exactly what it brings from Mosquitto (`#` under `topic read shared/#` is granted and brings shared/... only). But a filter no read rule can match a topic of (a topic the user may only write, `$SYS/#` without a rule for it, another user's `%u` level), or one a deny rule covers entirely, gets 0x80 (3.1.1) / 0x87 Not authorized (5.0) in place of a grant that can never deliver: a device learns at once that it will hear nothing there, instead of waiting in silence. The price: such a subscription is not kept, so an ACL reload (SIGHUP) that later allows the filter needs the client to subscribe again.",
    scenarios: [
      {
        id: 'acl.write-only-subscribe-v311',
        mosquitto: ['2 b: suback [0x02]'],
        brokerLite: ['2 b: suback [0x80]'],
      },
      {
        id: 'acl.write-only-subscribe-v5',
        mosquitto: ['2 b: suback [0x02]'],
        brokerLite: ['2 b: suback [0x87]'],
      },
      {
        id: 'acl.deny-subscribe',
        mosquitto: ['2 a: suback [0x02,0x02]'],
        brokerLite: ['2 a: suback [0x87,0x87]'],
      },
      {
        id: 'acl.pattern-username',
        mosquitto: ['2 d: suback [0x02,0x02]'],
        brokerLite: ['2 d: suback [0x02,0x87]'],
      },
      {
        id: 'acl.pattern-clientid',
        mosquitto: ['2 d: suback [0x02,0x02]'],
        brokerLite: ['2 d: suback [0x02,0x87]'],
      },
      {
        id: 'acl.pattern-anonymous',
        mosquitto: ['2 n: suback [0x02,0x02,0x02,0x02]'],
        brokerLite: ['2 n: suback [0x02,0x02,0x87,0x87]'],
      },
      {
        id: 'acl.sys-without-rule',
        mosquitto: ['2 b: suback [0x00]', '3 b: unsuback [0x00]'],
        brokerLite: ['2 b: suback [0x87]', '3 b: unsuback [0x11]'],
      },
      {
        id: 'acl.retained-under-acl',
        mosquitto: ['6 e: suback [0x01]'],
        brokerLite: ['6 e: suback [0x87]'],
      },
    ],
  },
  {
    id: 'acl-deny-wins',
    status: 'deliberate',
    title:
      "A deny rule wins over any grant; Mosquitto lets a grant in the user's own rules win over a pattern's deny",
    reason:
      "Mosquitto 2.0 checks a user's own rules before the pattern rules and stops at the first that decides, so `topic readwrite alice/#` lets alice use `alice/private` although `pattern deny %u/private` denies it (within one list Mosquitto also lets deny win, as scenario acl.deny-after-grant shows both doing). broker-lite treats every deny as final, as Mosquitto's documentation describes `deny`: an administrator who adds a pattern deny to lock a topic for everyone can rely on it holding for users with broader grants of their own.",
    scenarios: [
      {
        id: 'acl.pattern-deny-over-user-grant',
        mosquitto: [
          '4 a: msg alice/pattern-denied q1 "user rule grants, pattern denies"',
          '5 a: puback 0x00',
          '5 a: msg alice/pattern-denied q1 "write: user rule grants, pattern denies"',
        ],
        brokerLite: ['5 a: puback 0x87'],
      },
    ],
  },
  {
    id: 'overlapping-subscriptions-one-copy',
    status: 'deliberate',
    title:
      'Overlapping subscriptions of one MQTT 5 client: one copy at the highest QoS with every subscription identifier; Mosquitto sends a copy per subscription',
    reason:
      'The spec allows both ([MQTT-3.3.4-2] to [MQTT-3.3.4-5]): one PUBLISH at the maximum QoS of the matching subscriptions carrying all their identifiers, or one per subscription. broker-lite sends one, so an application handles each message once and a constrained link carries it once; Mosquitto 2.0 sends MQTT 5 clients a copy per matching subscription (each at its own QoS). For 3.1.1 clients both send one copy (scenario delivery.overlap-v311).',
    scenarios: [
      {
        id: 'delivery.overlap-v5',
        mosquitto: [
          '5 s: msg ov5/x q2 "both match" {"subscriptionIdentifiers":[2]}',
          '5 s: msg ov5/x q0 "both match" {"subscriptionIdentifiers":[1]}',
        ],
        brokerLite: ['5 s: msg ov5/x q2 "both match" {"subscriptionIdentifiers":[1,2]}'],
      },
      {
        id: 'acl.user-without-rules',
        mosquitto: ['4 e: msg public/broadcast q1 "pattern read"'],
        brokerLite: [],
      },
    ],
  },
  {
    id: 'session-taken-over-disconnect',
    status: 'deliberate',
    title:
      'A takeover sends the old MQTT 5 connection DISCONNECT 0x8E (Session taken over); Mosquitto 2.0.11 just closes it',
    reason:
      'MQTT 5 says the server sends the existing client a DISCONNECT with 0x8E before closing its connection ([MQTT-3.1.4-3]); the old client then knows another connection took its client id (a duplicate device, a misconfigured id) instead of seeing a network failure and reconnecting, which would take the id back in a loop.',
    scenarios: [
      {
        id: 'will.takeover-v5',
        mosquitto: [],
        brokerLite: ['4 w1: disconnect 0x8e'],
      },
      {
        id: 'session.takeover-v5',
        mosquitto: [],
        brokerLite: ['2 a: disconnect 0x8e'],
      },
    ],
  },
  {
    id: 'malformed-topic-reason-codes',
    status: 'deliberate',
    title:
      "A filter with '#' not last and a topic name with a wildcard: DISCONNECT 0x8F / 0x90; Mosquitto says 0x81 / 0x82",
    reason:
      "Both close the connection; the codes differ. broker-lite's codec names what was wrong (0x8F Topic Filter invalid, 0x90 Topic Name invalid) where Mosquitto gives the generic Malformed Packet / Protocol Error, so a device developer reading the disconnect reason finds the cause. The 3.1.1 scenarios (no reason codes) are the same.",
    scenarios: [
      {
        id: 'delivery.invalid-filter-v5',
        mosquitto: ['2 c: disconnect 0x81'],
        brokerLite: ['2 c: disconnect 0x8f'],
      },
      {
        id: 'delivery.wildcard-in-topic-v5',
        mosquitto: ['2 c: disconnect 0x82'],
        brokerLite: ['2 c: disconnect 0x90'],
      },
    ],
  },
  {
    id: 'max-inflight-default',
    status: 'deliberate',
    title: 'max_inflight_messages defaults to 100 (Mosquitto: 20)',
    reason:
      "With 20, a subscriber behind a busy gateway CPU is bound by scheduling round trips (fan-in QoS 1: 164-194k msg/s with 20, 420k with 100, docs/broker-lite-config.md); memory is the same since messages are held until acknowledged either way. `max_inflight_messages 20` gives Mosquitto's behaviour (the max-queued group sets it and matches).",
    scenarios: [
      {
        id: 'delivery.inflight-default',
        mosquitto: [
          '6 s: msg infd/t q1 ""',
          '6 s: msg infd/t q1 ""',
          '6 s: msg infd/t q1 ""',
          '6 s: msg infd/t q1 ""',
          '6 s: msg infd/t q1 ""',
          '6 s: msg infd/t q1 ""',
          '6 s: msg infd/t q1 ""',
          '6 s: msg infd/t q1 ""',
          '6 s: msg infd/t q1 ""',
          '6 s: msg infd/t q1 ""',
        ],
        brokerLite: [
          '5 s: msg infd/t q1 ""',
          '5 s: msg infd/t q1 ""',
          '5 s: msg infd/t q1 ""',
          '5 s: msg infd/t q1 ""',
          '5 s: msg infd/t q1 ""',
          '5 s: msg infd/t q1 ""',
          '5 s: msg infd/t q1 ""',
          '5 s: msg infd/t q1 ""',
          '5 s: msg infd/t q1 ""',
          '5 s: msg infd/t q1 ""',
        ],
      },
    ],
  },
  {
    id: 'queue-full-pauses-publisher',
    status: 'deliberate',
    title:
      "A subscriber's full queue pauses the publisher instead of dropping; Mosquitto acknowledges and drops",
    reason:
      "broker-lite's \"no silent loss\" (package README): when an online subscriber's queue is at max_queued_messages, the broker stops reading the socket of the publisher whose message filled it (its next PUBACK waits), and resumes it once the queue drained to half, so QoS 1/2 messages are delayed, not lost. Mosquitto acknowledges every PUBLISH and drops what does not fit. A publisher that is owed acknowledgements itself, or the broker's own messages, are not paused (dropped past twice the bound). An offline session's queue drops at the bound in both (scenario max-queued.offline).",
    scenarios: [
      {
        id: 'max-queued.online',
        mosquitto: [
          '5 p: puback 0x00',
          '5 p: puback 0x00',
          '5 p: puback 0x00',
          '5 p: puback 0x00',
          '5 p: puback 0x00',
          '5 p: puback 0x00',
        ],
        brokerLite: [
          '5 p: no puback (timeout)',
          '6 p: puback 0x00',
          '6 s: msg mq/t q1 ""',
          '6 s: msg mq/t q1 ""',
        ],
      },
    ],
  },
  {
    id: 'message-size-limit-reason',
    status: 'deliberate',
    title:
      'A PUBLISH over message_size_limit (MQTT 5): PUBACK / PUBREC 0x97; Mosquitto answers 0x95, which those packets may not carry',
    reason:
      "0x95 (Packet too large) is not among the reason codes MQTT 5 allows in PUBACK and PUBREC; a strict client (broker-lite's own codec among them) takes the packet as malformed. broker-lite answers 0x97 (Quota exceeded: an administrative limit was exceeded). Both drop the message and keep the connection. (The Maximum Packet Size broker-lite's CONNACK advertises here is entry connack-maximum-packet-size.)",
    scenarios: [
      {
        id: 'message-size-limit.v5',
        mosquitto: [
          '6 p: puback 0x95 (not a PUBACK reason code)',
          '7 p: pubrec 0x95 (not a PUBREC reason code)',
        ],
        brokerLite: ['6 p: puback 0x97', '7 p: pubrec 0x97'],
      },
    ],
  },
  {
    id: 'connect-over-max-packet-size',
    status: 'deliberate',
    title: 'A CONNECT over max_packet_size gets CONNACK 0x95 before the close; Mosquitto closes without one',
    reason:
      'MQTT 5 lets the server answer a CONNECT it refuses with a CONNACK carrying the reason: 0x95 Packet too large tells the client why (a will or credentials too large for this gateway) instead of a bare close that looks like a network failure. Nothing is read past the fixed header either way.',
    scenarios: [
      {
        id: 'max-packet-size.connect-over',
        mosquitto: ['1 c: closed'],
        brokerLite: ['1 c: connack 0x95 sp=0'],
      },
    ],
  },
  {
    id: 'bridge-sys-counters',
    status: 'deliberate',
    title:
      'A bridge publishes counters beside its state under $SYS/broker/connection/ID/; Mosquitto publishes only the state',
    reason:
      "broker-lite's own (issue 14.3): `connects`, `connect_failures`, `messages/queued`, `bytes/queued`, `messages/sent`, `messages/received`, `messages/dropped`, `last_error` and `bridge_state`, retained, each sys_interval when changed, for the status page and for monitoring a gateway's link without /metrics. The state topic itself is Mosquitto's, under the remote client id.",
    scenarios: [
      {
        id: 'bridge.state-notifications',
        mosquitto: ['5 l: $SYS topics $SYS/broker/connection/diff-b1/state'],
        brokerLite: [
          '5 l: $SYS topics $SYS/broker/connection/diff-b1/bridge_state $SYS/broker/connection/diff-b1/bytes/queued $SYS/broker/connection/diff-b1/connect_failures $SYS/broker/connection/diff-b1/connects $SYS/broker/connection/diff-b1/messages/dropped $SYS/broker/connection/diff-b1/messages/queued $SYS/broker/connection/diff-b1/messages/received $SYS/broker/connection/diff-b1/messages/sent $SYS/broker/connection/diff-b1/state',
        ],
      },
    ],
  },
  {
    id: 'bridge-state-qos0-upstream',
    status: 'deliberate',
    title: "The bridge's state `1` reaches the remote at QoS 0; Mosquitto publishes it at QoS 1",
    reason:
      "The bridge's QoS 1/2 messages to the remote go through its durable queue, in order; the state is sent at once after the CONNACK, ahead of the backlog, so the remote learns the bridge is up before a long backlog drains. At QoS 1 it would have to join the queue behind that backlog (and be counted as bridged traffic). The `0` the remote keeps when the link fails is the bridge's will, at QoS 1 as in Mosquitto.",
    scenarios: [
      {
        id: 'bridge.state-notifications',
        mosquitto: ['* r: msg $SYS/broker/connection/diff-b1/state q1 retain "1"'],
        brokerLite: ['* r: msg $SYS/broker/connection/diff-b1/state q0 retain "1"'],
      },
    ],
  },
  {
    id: 'sys-tree',
    status: 'deliberate',
    title:
      'The $SYS tree: broker-lite also publishes `clients/maximum` and `messages/dropped`; every topic Mosquitto 2.0 publishes is there',
    reason:
      "`clients/maximum` (the most clients connected at once) is in Mosquitto's documented tree but 2.0.11 does not publish it; " +
      '`messages/dropped` counts what the broker dropped for any reason (queue limits, expiry), where Mosquitto counts only ' +
      '`publish/messages/dropped`. Both are additions a dashboard can ignore; test/sys-mosquitto.test.ts checks the names, ' +
      'retain flags and value forms of the rest against Mosquitto.',
    scenarios: [
      {
        id: 'sys.topics',
        mosquitto: [
          '5 a: $SYS topics $SYS/broker/bytes/received $SYS/broker/bytes/sent $SYS/broker/clients/active $SYS/broker/clients/connected $SYS/broker/clients/disconnected $SYS/broker/clients/expired $SYS/broker/clients/inactive $SYS/broker/clients/total $SYS/broker/heap/current $SYS/broker/heap/maximum $SYS/broker/load/bytes/received/15min $SYS/broker/load/bytes/received/1min $SYS/broker/load/bytes/received/5min $SYS/broker/load/bytes/sent/15min $SYS/broker/load/bytes/sent/1min $SYS/broker/load/bytes/sent/5min $SYS/broker/load/connections/15min $SYS/broker/load/connections/1min $SYS/broker/load/connections/5min $SYS/broker/load/messages/received/15min $SYS/broker/load/messages/received/1min $SYS/broker/load/messages/received/5min $SYS/broker/load/messages/sent/15min $SYS/broker/load/messages/sent/1min $SYS/broker/load/messages/sent/5min $SYS/broker/load/publish/dropped/15min $SYS/broker/load/publish/dropped/1min $SYS/broker/load/publish/dropped/5min $SYS/broker/load/publish/received/15min $SYS/broker/load/publish/received/1min $SYS/broker/load/publish/received/5min $SYS/broker/load/publish/sent/15min $SYS/broker/load/publish/sent/1min $SYS/broker/load/publish/sent/5min $SYS/broker/load/sockets/15min $SYS/broker/load/sockets/1min $SYS/broker/load/sockets/5min $SYS/broker/messages/received $SYS/broker/messages/sent $SYS/broker/messages/stored $SYS/broker/publish/bytes/received $SYS/broker/publish/bytes/sent $SYS/broker/publish/messages/dropped $SYS/broker/publish/messages/received $SYS/broker/publish/messages/sent $SYS/broker/retained messages/count $SYS/broker/shared_subscriptions/count $SYS/broker/store/messages/bytes $SYS/broker/store/messages/count $SYS/broker/subscriptions/count $SYS/broker/uptime $SYS/broker/version',
        ],
        brokerLite: [
          '5 a: $SYS topics $SYS/broker/bytes/received $SYS/broker/bytes/sent $SYS/broker/clients/active $SYS/broker/clients/connected $SYS/broker/clients/disconnected $SYS/broker/clients/expired $SYS/broker/clients/inactive $SYS/broker/clients/maximum $SYS/broker/clients/total $SYS/broker/heap/current $SYS/broker/heap/maximum $SYS/broker/load/bytes/received/15min $SYS/broker/load/bytes/received/1min $SYS/broker/load/bytes/received/5min $SYS/broker/load/bytes/sent/15min $SYS/broker/load/bytes/sent/1min $SYS/broker/load/bytes/sent/5min $SYS/broker/load/connections/15min $SYS/broker/load/connections/1min $SYS/broker/load/connections/5min $SYS/broker/load/messages/received/15min $SYS/broker/load/messages/received/1min $SYS/broker/load/messages/received/5min $SYS/broker/load/messages/sent/15min $SYS/broker/load/messages/sent/1min $SYS/broker/load/messages/sent/5min $SYS/broker/load/publish/dropped/15min $SYS/broker/load/publish/dropped/1min $SYS/broker/load/publish/dropped/5min $SYS/broker/load/publish/received/15min $SYS/broker/load/publish/received/1min $SYS/broker/load/publish/received/5min $SYS/broker/load/publish/sent/15min $SYS/broker/load/publish/sent/1min $SYS/broker/load/publish/sent/5min $SYS/broker/load/sockets/15min $SYS/broker/load/sockets/1min $SYS/broker/load/sockets/5min $SYS/broker/messages/dropped $SYS/broker/messages/received $SYS/broker/messages/sent $SYS/broker/messages/stored $SYS/broker/publish/bytes/received $SYS/broker/publish/bytes/sent $SYS/broker/publish/messages/dropped $SYS/broker/publish/messages/received $SYS/broker/publish/messages/sent $SYS/broker/retained messages/count $SYS/broker/shared_subscriptions/count $SYS/broker/store/messages/bytes $SYS/broker/store/messages/count $SYS/broker/subscriptions/count $SYS/broker/uptime $SYS/broker/version',
        ],
      },
    ],
  },
  {
    id: 'topic-alias-outbound',
    status: 'deliberate',
    title: 'broker-lite sends topic aliases to a subscriber that allows them; Mosquitto 2.0 never does',
    reason:
      'A subscriber whose CONNECT sets Topic Alias Maximum asks for aliases; on a slow link a repeated 48-character topic ' +
      'then costs two bytes (69 -> 24 bytes per message in npm run bench). The client sees the same topic (it resolves the ' +
      "alias); the transcript shows the property. Paho's test_server_topic_alias needs it; Mosquitto fails that test.",
    scenarios: [
      {
        id: 'delivery.topic-alias-outbound-v5',
        mosquitto: [
          '4 s: msg tao/a-rather-long-topic-name-for-a-slow-link/x q1 "1"',
          '5 s: msg tao/a-rather-long-topic-name-for-a-slow-link/x q1 "2"',
          '6 s: msg tao/a-rather-long-topic-name-for-a-slow-link/x q1 "3"',
        ],
        brokerLite: [
          '4 s: msg tao/a-rather-long-topic-name-for-a-slow-link/x q1 "1" {"topicAlias":1}',
          '5 s: msg tao/a-rather-long-topic-name-for-a-slow-link/x q1 "2" {"topicAlias":1}',
          '6 s: msg tao/a-rather-long-topic-name-for-a-slow-link/x q1 "3" {"topicAlias":1}',
        ],
      },
    ],
  },
];
