/**
 * The differential suite's data model: a config group (a mosquitto.conf body with its password
 * and ACL files, run on one Mosquitto and one broker-lite) and its scenarios (scripts of client
 * actions, written as data). test/README.md, "The differential suite", says how they run.
 */
import type { Properties, QoS } from '@mqtt-edge/codec';

/** Which broker of a side a client talks to: the one under test, or the bridge's remote. */
export type Server = 'local' | 'remote';

export interface WillSpec {
  topic: string;
  payload: string;
  qos?: QoS;
  retain?: boolean;
  properties?: Properties;
}

export interface ConnectStep {
  op: 'connect';
  client: string;
  /** 4 = MQTT 3.1.1 (default), 5 = MQTT 5.0. */
  version?: 4 | 5;
  /** Default: the client's name. '' asks the broker to assign one. */
  clientId?: string;
  /** Default true. */
  clean?: boolean;
  username?: string;
  password?: string;
  will?: WillSpec;
  keepalive?: number;
  properties?: Properties;
  server?: Server;
}

export interface SubscribeStep {
  op: 'subscribe';
  client: string;
  /** A filter (QoS 2 when given as a string) or a filter with its options. */
  filters: Array<
    string | { filter: string; qos?: QoS; noLocal?: boolean; retainAsPublished?: boolean; rh?: 0 | 1 | 2 }
  >;
  properties?: Properties;
}

export interface UnsubscribeStep {
  op: 'unsubscribe';
  client: string;
  filters: string[];
}

export interface PublishStep {
  op: 'publish';
  client: string;
  topic: string;
  /** Default the empty payload when `size` is not given. */
  payload?: string;
  /** A payload of this many bytes ('x' repeated) in place of `payload`. */
  size?: number;
  qos?: QoS;
  retain?: boolean;
  properties?: Properties;
  /**
   * Publish it this many times (default 1), each waiting for its acknowledgement; the first
   * that does not come ends the step (observed as `no puback (timeout)`).
   */
  repeat?: number;
  /**
   * How long to wait for the acknowledgement (default 3 s). Shorter where a broker is expected
   * to hold it back (backpressure), so the step does not cost the full wait.
   */
  ackTimeoutMs?: number;
}

export interface DisconnectStep {
  op: 'disconnect';
  client: string;
  /** MQTT 5 reason code (0x04 sends the will). */
  reason?: number;
  properties?: Properties;
}

/** The socket closed without DISCONNECT: the broker sees a network failure (the will fires). */
export interface DropStep {
  op: 'drop';
  client: string;
}

/**
 * Waits (bounded) until `client` has received a PUBLISH on `topic` (and, with `payload`, that
 * payload), for what a timer or another broker sends: wills, session expiry, bridges. On a
 * timeout the transcript says `timeout` and the run goes on.
 */
export interface WaitStep {
  op: 'wait';
  client: string;
  topic: string;
  payload?: string;
  timeoutMs?: number;
}

/** Waits (bounded) until the broker closed `client`'s connection, for closes a timer makes. */
export interface WaitCloseStep {
  op: 'waitClose';
  client: string;
  timeoutMs?: number;
}

/**
 * `hold`: the client stops acknowledging QoS 1/2 messages (they are counted and kept);
 * `auto` (the default): it acknowledges each at once, and sends the held ones first.
 */
export interface AcksStep {
  op: 'acks';
  client: string;
  mode: 'hold' | 'auto';
}

/**
 * Time itself is what is tested (a session expiry interval with nothing to wait on): the run
 * pauses `ms`. Only where no event exists; everything else waits for events.
 */
export interface ElapseStep {
  op: 'elapse';
  ms: number;
}

/**
 * `client` subscribes to `filter` (default `$SYS/#`), and the transcript records the names of
 * the topics that arrive (retained, at once) in one line, not their values (which are timing);
 * then it unsubscribes.
 */
export interface SysTopicsStep {
  op: 'sysTopics';
  client: string;
  filter?: string;
}

export type Step =
  | ConnectStep
  | SubscribeStep
  | UnsubscribeStep
  | PublishStep
  | DisconnectStep
  | DropStep
  | WaitStep
  | WaitCloseStep
  | AcksStep
  | ElapseStep
  | SysTopicsStep;

export interface Scenario {
  /** `group.name`, unique: differences.ts refers to it. */
  id: string;
  title: string;
  steps: Step[];
}

export interface ConfigGroup {
  name: string;
  /**
   * The mosquitto.conf body both brokers get after `listener PORT 127.0.0.1`. `{dir}` is the
   * group's directory (password and ACL files are written there), `{remote}` the bridge's
   * remote broker's port (bridge groups only).
   */
  conf: string;
  /** user -> password; written with broker-lite's passwd code as `{dir}/passwd`. */
  passwords?: Record<string, string>;
  /** Written as `{dir}/acl`. */
  acl?: string;
  /** A remote broker (a Mosquitto with this config body, one per side) for bridges. */
  remote?: { conf: string };
  /**
   * Bridge groups: before the first scenario the harness publishes QoS 0 probes on these topics
   * (out: at the side's broker, in: at the remote) until each crossed the bridge once.
   */
  bridgeProbe?: { out: string; in: string };
  /**
   * Deliveries cross another broker (bridges), so the step during which one arrives is timing:
   * each client's deliveries are reported together after the last step (`* CLIENT: msg ...`,
   * sorted by topic), and wait steps make sure they came.
   */
  asyncDeliveries?: boolean;
  /** A fresh pair of brokers for each scenario (state such as retained messages must not carry over). */
  freshPerScenario?: boolean;
  scenarios: Scenario[];
}
