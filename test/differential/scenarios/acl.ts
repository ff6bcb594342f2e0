/**
 * ACL files: `user` sections with `topic read|write|readwrite|deny` (and no access word:
 * readwrite), rules for anonymous clients (before the first `user`), `pattern` rules with `%u`
 * and `%c`, and what wildcard subscriptions (`#` included) bring under them. One broker pair
 * for the whole group: topics differ per scenario, and the one retained message is cleared.
 */
import { connect, connect5, disconnect, drop, publish, subscribe, unsubscribe, wait } from '../steps.ts';
import type { ConfigGroup, Scenario, Step } from '../types.ts';

const PASSWORDS = { alice: 'pa', bob: 'pb', carol: 'pc', dave: 'pd', erin: 'pe' };

const ACL = `# anonymous clients: the rules before the first user line
topic read public/#
topic write anon/in
topic deny public/hidden

user alice
topic readwrite alice/#
topic deny alice/secret/#
topic read shared/#
topic write shared/alice
topic write carol/private
topic write bob/in

user bob
topic read shared/#
topic read bob/in
topic write bob/out
topic readwrite fleet/+/status

user carol
topic #
topic deny carol/private

pattern read devices/%u/cmd
pattern write devices/%u/state
pattern readwrite clients/%c/#
pattern read public/broadcast
pattern deny clients/%c/locked
pattern deny %u/pattern-denied
`;

const as = (name: keyof typeof PASSWORDS) => ({ username: name, password: PASSWORDS[name] });

/** `client` logged in as `user` over `v`. */
function login(client: string, user: keyof typeof PASSWORDS, v: 4 | 5 = 4, clientId?: string): Step {
  return v === 5 ? connect5(client, { ...as(user), clientId }) : connect(client, { ...as(user), clientId });
}

function sc(id: string, title: string, steps: Step[]): Scenario {
  return { id: `acl.${id}`, title, steps };
}

/** Each QoS once, to `topic`, as `client`. */
const allQos = (client: string, topic: string): Step[] => [
  publish(client, topic, 'q0'),
  publish(client, topic, 'q1', { qos: 1 }),
  publish(client, topic, 'q2', { qos: 2 }),
];

export const acl: ConfigGroup = {
  name: 'acl',
  conf: 'allow_anonymous true\npassword_file {dir}/passwd\nacl_file {dir}/acl',
  passwords: PASSWORDS,
  acl: ACL,
  scenarios: [
    ...([4, 5] as const).map((v) =>
      sc(
        `readwrite-own-v${v === 5 ? '5' : '311'}`,
        `a readwrite rule: publish and receive (${v === 5 ? '5.0' : '3.1.1'})`,
        [login('a', 'alice', v), subscribe('a', 'alice/#'), ...allQos('a', `alice/rw${v}`)],
      ),
    ),
    ...([4, 5] as const).map((v) =>
      sc(
        `write-denied-v${v === 5 ? '5' : '311'}`,
        `a publish no rule allows: acks and nothing delivered (${v === 5 ? '5.0' : '3.1.1'})`,
        [login('c', 'carol'), subscribe('c', 'bob/#'), login('a', 'alice', v), ...allQos('a', 'bob/out')],
      ),
    ),
    sc('read-only-publish', 'a read rule does not allow publishing', [
      login('a', 'alice'),
      subscribe('a', 'shared/#'),
      login('b', 'bob', 5),
      publish('b', 'shared/from-bob', 'x', { qos: 1 }),
      publish('a', 'shared/alice', 'from alice', { qos: 1 }),
    ]),
    ...([4, 5] as const).map((v) =>
      sc(
        `write-only-subscribe-v${v === 5 ? '5' : '311'}`,
        `subscribing where only write is allowed (${v === 5 ? '5.0' : '3.1.1'})`,
        [
          login('b', 'bob', v),
          subscribe('b', 'bob/out'),
          login('c', 'carol'),
          publish('c', 'bob/out', 'to bob', { qos: 1 }),
        ],
      ),
    ),
    ...([4, 5] as const).map((v) =>
      sc(
        `hash-filtered-v${v === 5 ? '5' : '311'}`,
        `'#' under an ACL: what arrives is what may be read (${v === 5 ? '5.0' : '3.1.1'})`,
        [
          login('b', 'bob', v),
          subscribe('b', { filter: '#', qos: 1 }),
          login('c', 'carol'),
          publish('c', 'alice/x', 'no', { qos: 1 }),
          publish('c', 'shared/y', 'yes', { qos: 1 }),
          publish('c', 'fleet/7/status', 'yes', { qos: 1 }),
          publish('c', 'bob/out', 'no', { qos: 1 }),
          publish('c', 'public/z', 'no', { qos: 1 }),
        ],
      ),
    ),
    sc('covered-wildcard', 'a wildcard filter a read rule covers', [
      login('b', 'bob', 5),
      subscribe('b', { filter: 'shared/#', qos: 1 }, { filter: 'fleet/+/status', qos: 1 }),
      login('c', 'carol'),
      publish('c', 'shared/deep/er', 'yes', { qos: 1 }),
      publish('c', 'fleet/9/status', 'yes', { qos: 1 }),
      publish('c', 'fleet/9/other', 'no', { qos: 1 }),
    ]),
    sc('plus-wider-than-rule', "'+/+/status' is wider than the rule fleet/+/status", [
      login('b', 'bob', 5),
      subscribe('b', { filter: '+/+/status', qos: 1 }),
      login('c', 'carol'),
      publish('c', 'fleet/3/status', 'allowed by the rule', { qos: 1 }),
      publish('c', 'other/3/status', 'not allowed', { qos: 1 }),
    ]),
    sc('deny-read', 'a deny rule under a readwrite rule: nothing arrives from there', [
      login('a', 'alice', 5),
      subscribe('a', { filter: 'alice/#', qos: 1 }),
      login('c', 'carol'),
      publish('c', 'alice/secret/x', 'hidden', { qos: 1 }),
      publish('c', 'alice/open', 'visible', { qos: 1 }),
    ]),
    sc('deny-write', 'a deny rule under a readwrite rule: publishing there is refused', [
      login('c', 'carol'),
      subscribe('c', 'alice/#'),
      login('a', 'alice', 5),
      publish('a', 'alice/secret/y', 'refused', { qos: 1 }),
      publish('a', 'alice/plain', 'fine', { qos: 1 }),
    ]),
    sc(
      'deny-after-grant',
      'a deny rule after the grant it narrows (anonymous rules, and a pattern under a pattern)',
      [
        connect5('n', { clientId: 'anon-2' }),
        subscribe('n', { filter: 'public/#', qos: 1 }, { filter: 'clients/anon-2/#', qos: 1 }),
        login('c', 'carol'),
        publish('c', 'public/hidden', 'denied by the later rule', { qos: 1 }),
        publish('c', 'public/shown', 'granted', { qos: 1 }),
        publish('c', 'clients/anon-2/locked', 'denied by a pattern', { qos: 1 }),
        publish('c', 'clients/anon-2/open', 'granted by a pattern', { qos: 1 }),
        publish('n', 'clients/anon-2/locked', 'write denied by a pattern', { qos: 1 }),
      ],
    ),
    sc('pattern-deny-over-user-grant', "a pattern's deny against a grant in the user's own rules", [
      login('a', 'alice', 5),
      subscribe('a', { filter: 'alice/#', qos: 1 }),
      login('c', 'carol'),
      publish('c', 'alice/pattern-denied', 'user rule grants, pattern denies', { qos: 1 }),
      publish('a', 'alice/pattern-denied', 'write: user rule grants, pattern denies', { qos: 1 }),
      publish('c', 'alice/marker', 'marker', { qos: 1 }),
    ]),
    sc('deny-subscribe', 'subscribing to exactly what a deny rule names', [
      login('a', 'alice', 5),
      subscribe('a', 'alice/secret/#', 'alice/secret/x'),
    ]),
    sc('readwrite-default', "'topic #' with no access word is readwrite; a deny still holds", [
      login('c', 'carol', 5),
      subscribe('c', { filter: '#', qos: 1 }),
      login('a', 'alice'),
      publish('a', 'carol/private', 'denied to carol', { qos: 1 }),
      publish('a', 'alice/hello', 'carol reads everything else', { qos: 1 }),
      publish('c', 'anything/at/all', 'carol writes anywhere', { qos: 1 }),
    ]),
    sc('pattern-username', "pattern rules with '%u'", [
      login('d', 'dave', 5),
      subscribe('d', 'devices/dave/cmd', 'devices/erin/cmd'),
      login('c', 'carol'),
      subscribe('c', 'devices/#'),
      publish('c', 'devices/dave/cmd', 'for dave', { qos: 1 }),
      publish('c', 'devices/erin/cmd', 'for erin', { qos: 1 }),
      publish('d', 'devices/dave/state', 'mine', { qos: 1 }),
      publish('d', 'devices/erin/state', 'not mine', { qos: 1 }),
    ]),
    sc('pattern-clientid', "pattern rules with '%c'", [
      login('d', 'dave', 5, 'dev-7'),
      subscribe('d', 'clients/dev-7/#', 'clients/dev-8/#'),
      login('c', 'carol'),
      subscribe('c', 'clients/#'),
      publish('d', 'clients/dev-7/t', 'own id', { qos: 1 }),
      publish('d', 'clients/dev-8/t', 'other id', { qos: 1 }),
      publish('c', 'clients/dev-7/cmd', 'to dev-7', { qos: 1 }),
    ]),
    sc('pattern-anonymous', "anonymous clients: their rules and the '%c' patterns; '%u' ones never match", [
      connect5('n', { clientId: 'anon-1' }),
      subscribe('n', 'public/#', 'clients/anon-1/#', 'devices//cmd', 'alice/#'),
      login('c', 'carol'),
      publish('c', 'public/news', 'read by anyone', { qos: 1 }),
      publish('c', 'clients/anon-1/x', 'own client id', { qos: 1 }),
      publish('c', 'devices//cmd', 'empty user name level', { qos: 1 }),
      publish('n', 'anon/in', 'anonymous write', { qos: 1 }),
      publish('n', 'alice/x', 'not for anonymous', { qos: 1 }),
      publish('n', 'clients/anon-1/y', 'own client id', { qos: 1 }),
    ]),
    sc('user-without-rules', 'a user with no section of its own gets the patterns only', [
      login('e', 'erin', 5),
      subscribe('e', 'public/broadcast', 'public/#', 'devices/erin/cmd'),
      login('c', 'carol'),
      publish('c', 'public/broadcast', 'pattern read', { qos: 1 }),
      publish('c', 'public/other', 'anonymous rule, not erin', { qos: 1 }),
      publish('c', 'devices/erin/cmd', '%u pattern', { qos: 1 }),
      publish('e', 'devices/erin/state', '%u pattern write', { qos: 1 }),
      publish('e', 'public/broadcast', 'read-only', { qos: 1 }),
    ]),
    sc('sys-without-rule', "'$SYS/#' for a user no rule lets read it", [
      login('b', 'bob', 5),
      subscribe('b', { filter: '$SYS/broker/nonexistent/#', qos: 0 }),
      unsubscribe('b', '$SYS/broker/nonexistent/#'),
    ]),
    sc('retained-under-acl', 'retained messages are checked against read rules at subscribe time', [
      login('a', 'alice', 5),
      publish('a', 'shared/alice', 'kept', { qos: 1, retain: true }),
      login('b', 'bob', 5),
      subscribe('b', { filter: 'shared/#', qos: 1 }),
      login('e', 'erin', 5),
      subscribe('e', { filter: 'shared/#', qos: 1 }),
      login('c', 'carol', 5),
      subscribe('c', { filter: 'shared/+', qos: 1 }),
      publish('a', 'shared/alice', '', { qos: 1, retain: true }),
    ]),
    sc('will-denied-topic', 'a will on a topic the user may not write', [
      login('c', 'carol'),
      subscribe('c', 'bob/#', 'alice/#'),
      connect('a', {
        ...as('alice'),
        clientId: 'alice-will',
        will: { topic: 'bob/out', payload: 'denied will', qos: 1 },
      }),
      connect('a2', {
        ...as('alice'),
        clientId: 'alice-will-2',
        will: { topic: 'alice/will', payload: 'allowed will', qos: 1 },
      }),
      drop('a'),
      drop('a2'),
      wait('c', 'alice/will'),
      publish('c', 'bob/out', 'marker', { qos: 1 }),
    ]),
    sc('no-readers-v5', 'PUBACK when the only subscriber may not read the topic', [
      login('b', 'bob', 5),
      subscribe('b', { filter: 'fleet/#', qos: 1 }),
      login('c', 'carol', 5),
      publish('c', 'fleet/1/other', 'bob may not read it', { qos: 1 }),
      publish('c', 'fleet/1/status', 'bob reads it', { qos: 1 }),
    ]),
    sc('write-then-read-other-user', 'one user writes where another may read', [
      login('b', 'bob', 4),
      subscribe('b', 'bob/in'),
      login('a', 'alice', 4),
      publish('a', 'bob/in', 'for bob', { qos: 2 }),
      disconnect('a'),
      disconnect('b'),
    ]),
  ],
};
