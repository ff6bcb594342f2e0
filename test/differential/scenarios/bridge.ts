/**
 * Bridges: each side's broker (Mosquitto, or broker-lite) bridges to a remote Mosquitto of its
 * own with the same `connection` section; clients on both ends compare what crosses, at which
 * QoS, with which retain flag and topic, and the bridge's state notifications. The harness waits
 * until each bridge carries messages both ways before the first scenario (targets.ts).
 */
import { connect, publish, subscribe, sysTopics, wait } from '../steps.ts';
import type { ConfigGroup, Scenario, Step } from '../types.ts';

const sc = (id: string, title: string, steps: Step[]): Scenario => ({ id: `bridge.${id}`, title, steps });
const remote = (client: string) => connect(client, { server: 'remote' });

export const bridge: ConfigGroup = {
  name: 'bridge',
  conf: `allow_anonymous true
connection b1
address 127.0.0.1:{remote}
remote_clientid diff-b1
topic out/# out 1
topic in/# in 2
topic both/# both 1
topic pre/# out 1 local/ remote/
cleansession true
restart_timeout 1`,
  remote: { conf: 'allow_anonymous true' },
  bridgeProbe: { out: 'out/probe', in: 'in/probe' },
  asyncDeliveries: true,
  scenarios: [
    sc('state-notifications', "the bridge's state: '$SYS/broker/connection/ID/state' on both ends", [
      remote('r'),
      subscribe('r', '$SYS/broker/connection/+/state'),
      connect('l'),
      subscribe('l', '$SYS/broker/connection/+/state'),
      // The names only: broker-lite's counters there change with time.
      sysTopics('l', '$SYS/broker/connection/#'),
    ]),
    sc('out', "'topic out/# out 1': local to remote, QoS capped at 1", [
      remote('r'),
      subscribe('r', { filter: 'out/#', qos: 2 }),
      connect('l'),
      publish('l', 'out/a', 'q0'),
      publish('l', 'out/b', 'q1', { qos: 1 }),
      publish('l', 'out/c', 'q2', { qos: 2 }),
      wait('r', 'out/a'),
      wait('r', 'out/b'),
      wait('r', 'out/c'),
    ]),
    sc('out-retained', 'a retained message crosses retained', [
      remote('r'),
      subscribe('r', { filter: 'out/ret/#', qos: 1 }),
      connect('l'),
      publish('l', 'out/ret/x', 'kept', { qos: 1, retain: true }),
      wait('r', 'out/ret/x'),
      remote('late'),
      subscribe('late', { filter: 'out/ret/#', qos: 1 }),
      publish('l', 'out/ret/x', '', { qos: 1, retain: true }),
      wait('r', 'out/ret/x', { payload: '' }),
    ]),
    sc('in', "'topic in/# in 2': remote to local", [
      connect('l'),
      subscribe('l', { filter: 'in/#', qos: 2 }),
      remote('r'),
      publish('r', 'in/a', 'q0'),
      publish('r', 'in/b', 'q1', { qos: 1 }),
      publish('r', 'in/c', 'q2', { qos: 2 }),
      wait('l', 'in/a'),
      wait('l', 'in/b'),
      wait('l', 'in/c'),
    ]),
    sc('not-bridged', 'topics outside the bridge stay on their side', [
      connect('l'),
      subscribe('l', 'other/#', 'in/#'),
      remote('r'),
      subscribe('r', 'other/#', 'out/#'),
      publish('l', 'other/local', 'stays local', { qos: 1 }),
      publish('r', 'other/remote', 'stays remote', { qos: 1 }),
      publish('l', 'out/marker', 'crosses', { qos: 1 }),
      publish('r', 'in/marker', 'crosses', { qos: 1 }),
      wait('r', 'out/marker'),
      wait('l', 'in/marker'),
    ]),
    sc('both-no-echo', "'both': each way once, no echo back", [
      connect('l'),
      subscribe('l', { filter: 'both/#', qos: 1 }),
      remote('r'),
      subscribe('r', { filter: 'both/#', qos: 1 }),
      publish('l', 'both/from-local', 'L', { qos: 1 }),
      wait('r', 'both/from-local'),
      publish('r', 'both/from-remote', 'R', { qos: 1 }),
      wait('l', 'both/from-remote'),
      publish('r', 'both/marker', 'M', { qos: 1 }),
      wait('l', 'both/marker'),
    ]),
    sc('prefixes', "'topic pre/# out 1 local/ remote/': prefixes swapped on the way", [
      remote('r'),
      subscribe('r', '#'),
      connect('l'),
      publish('l', 'local/pre/x', 'prefixed', { qos: 1 }),
      publish('l', 'pre/x', 'no prefix: not bridged', { qos: 1 }),
      publish('l', 'out/marker2', 'marker', { qos: 1 }),
      wait('r', 'remote/pre/x'),
      wait('r', 'out/marker2'),
    ]),
  ],
};
