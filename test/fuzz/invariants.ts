import net from 'node:net';
/**
 * What must hold after every fuzz case, checked by well-behaved clients over real sockets:
 * the broker process is alive, its RSS stayed under a bound while the case ran, an
 * authenticated client still gets a QoS 1 message through, and (on crash cases) every message
 * the broker acknowledged survives kill -9.
 */
import { matchTopic } from '@mqtt-edge/codec';
import { createWebSocketStream, WebSocket } from 'ws';
import { RawClient } from '../../packages/broker-lite/test/helpers/raw-client.ts';
import type { BrokerProcess } from './broker-process.ts';
import { CLIENT_IDS } from './recipes.ts';

const text = new TextEncoder();
const decoder = new TextDecoder();

/** Rejects with `what` when `p` has not settled within `ms`. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The well-behaved clients connect from an address of their own, as a real device elsewhere on
 * the LAN would: logins are admitted fairly per source address (issue 12.10), so a client that
 * shares the flooding address is told 0x9F (busy, retry) by design.
 */
const WELL_BEHAVED_ADDRESS = '127.0.0.2';

async function open(via: 'tcp' | 'ws', broker: BrokerProcess): Promise<RawClient> {
  if (via === 'tcp') {
    const s = net.connect({ port: broker.mqttPort, host: '127.0.0.1', localAddress: WELL_BEHAVED_ADDRESS });
    await new Promise<void>((resolve, reject) => {
      s.once('connect', () => resolve());
      s.once('error', reject);
    });
    return RawClient.over(s);
  }
  const ws = new WebSocket(`ws://127.0.0.1:${broker.wsPort}/mqtt`, ['mqtt'], {
    localAddress: WELL_BEHAVED_ADDRESS,
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return RawClient.over(createWebSocketStream(ws));
}

/** Samples the broker's RSS every few milliseconds while a case runs; keeps the peak. */
export class RssSampler {
  peak = 0;
  private timer: NodeJS.Timeout;

  constructor(
    private readonly broker: BrokerProcess,
    everyMs = 20,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), everyMs);
  }

  sample(): void {
    const rss = this.broker.rssBytes();
    if (rss !== undefined && rss > this.peak) this.peak = rss;
  }

  stop(): number {
    clearInterval(this.timer);
    this.sample();
    return this.peak;
  }
}

/**
 * The probe: logs in as `probe`, subscribes to probe/# at QoS 1, publishes one QoS 1 message
 * and must get both its PUBACK and the message back. Throws what went wrong.
 */
export async function probeQos1(
  broker: BrokerProcess,
  password: string,
  n: number,
  timeoutMs: number,
): Promise<void> {
  const via = n % 2 === 0 ? 'tcp' : 'ws';
  const version = n % 3 === 0 ? 4 : 5;
  const what = `probe ${n} (${via}, MQTT ${version === 5 ? '5' : '3.1.1'})`;
  const deadline = Date.now() + timeoutMs;
  const left = () => Math.max(1, deadline - Date.now());
  const c = await within(open(via, broker), left(), `${what}: opening the connection`);
  try {
    const ack = await within(
      c.handshake({
        protocolVersion: version,
        clientId: 'fuzz-probe',
        clean: true,
        username: 'probe',
        password: text.encode(password),
      }),
      left(),
      `${what}: CONNACK`,
    );
    if (ack.reasonCode !== 0) throw new Error(`${what}: CONNACK refused the login with ${ack.reasonCode}`);
    c.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'probe/#', qos: 1 }] });
    const sub = await c.expect('suback', left());
    if (sub.reasonCodes[0] !== 1) throw new Error(`${what}: SUBACK granted ${sub.reasonCodes[0]}, not QoS 1`);
    const topic = `probe/${n}`;
    c.publish(topic, `probe-${n}`, 1, false, 2);
    let acked = false;
    let delivered = false;
    while (!(acked && delivered)) {
      const p = await c.next(left()).catch((err: Error) => {
        throw new Error(
          `${what}: ${acked ? '' : 'PUBACK '}${delivered ? '' : 'message '}missing: ${err.message}`,
        );
      });
      if (p === null) throw new Error(`${what}: the broker closed the connection`);
      if (p.type === 'puback' && p.packetId === 2) {
        if ((p.reasonCode ?? 0) !== 0) throw new Error(`${what}: PUBACK with reason ${p.reasonCode}`);
        acked = true;
      } else if (p.type === 'publish' && p.topic === topic) {
        if (decoder.decode(p.payload) !== `probe-${n}`) throw new Error(`${what}: wrong payload`);
        if (p.qos === 1) c.send({ type: 'puback', packetId: p.packetId as number });
        delivered = true;
      }
    }
    c.send({ type: 'disconnect' });
  } finally {
    c.close();
  }
}

const KEEPER_PUBLISHER_ID = 'fuzz-keeper-pub';
/** Session expiry "never" (MQTT 5). */
const FOREVER = 0xffffffff;

/**
 * The durability check's clients: a persistent session (QoS 1 on keep/#) that is offline while a
 * publisher gets PUBACKs, and the record of every message acknowledged. Each round has a session
 * of its own (`fuzz-keeper-N`), ended once checked, so no round inherits another's queue.
 */
export class Keeper {
  private round = 0;

  private get id(): string {
    return `fuzz-keeper-${this.round}`;
  }

  constructor(
    private readonly broker: BrokerProcess,
    private readonly password: string,
    private readonly timeoutMs: number,
  ) {}

  private async login(clientId: string, clean: boolean): Promise<{ c: RawClient; sessionPresent: boolean }> {
    const c = await within(open('tcp', this.broker), this.timeoutMs, `${clientId}: opening the connection`);
    const ack = await within(
      c.handshake({
        protocolVersion: 5,
        clientId,
        clean,
        username: 'keeper',
        password: text.encode(this.password),
        properties: { sessionExpiryInterval: FOREVER },
      }),
      this.timeoutMs,
      `${clientId}: CONNACK`,
    );
    if (ack.reasonCode !== 0) {
      c.close();
      throw new Error(`${clientId}: CONNACK refused the login with ${ack.reasonCode}`);
    }
    return { c, sessionPresent: ack.sessionPresent };
  }

  /** Creates the persistent subscription (a fresh broker, or a fresh storage). */
  async setup(): Promise<void> {
    this.round++;
    const { c } = await this.login(this.id, true);
    try {
      c.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'keep/#', qos: 1 }] });
      const sub = await c.expect('suback', this.timeoutMs);
      if (sub.reasonCodes[0] !== 1) throw new Error(`keeper: SUBACK granted ${sub.reasonCodes[0]}`);
      c.send({ type: 'disconnect' });
    } finally {
      c.close();
    }
  }

  /**
   * Publishes `count` QoS 1 messages and waits for their PUBACKs, sends `count / 2` more without
   * waiting, then kill -9 and restart. Returns what was acknowledged. A PUBACK saying nobody
   * subscribes (0x10) means the keeper's session was already lost: that throws.
   */
  async publishThenCrash(count: number): Promise<string[]> {
    const round = this.round;
    const { c } = await this.login(KEEPER_PUBLISHER_ID, true);
    const sent = new Map<number, string>();
    const acked: string[] = [];
    try {
      for (let i = 0; i < count; i++) {
        const id = `r${round}-${i}`;
        sent.set(i + 1, id);
        c.publish(`keep/${round}/${i}`, id, 1, false, i + 1);
      }
      while (acked.length < count) {
        const p = await c.next(this.timeoutMs).catch((err: Error) => {
          throw new Error(
            `durability round ${round}: ${count - acked.length} PUBACKs missing: ${err.message}`,
          );
        });
        if (p === null) throw new Error(`durability round ${round}: the broker closed the publisher`);
        if (p.type !== 'puback') continue;
        const code = p.reasonCode ?? 0;
        if (code === 0x10)
          throw new Error(`durability round ${round}: PUBACK 0x10, the keeper's subscription is gone`);
        if (code !== 0) throw new Error(`durability round ${round}: PUBACK with reason ${code}`);
        acked.push(sent.get(p.packetId) as string);
      }
      // In flight when the broker dies: these may or may not survive; they need not.
      for (let i = count; i < count + count / 2; i++)
        c.publish(`keep/${round}/${i}`, `r${round}-${i}`, 1, false, i + 1);
    } finally {
      await this.broker.kill9();
      c.close();
    }
    await this.broker.start();
    return acked;
  }

  /** Reconnects the keeper; returns the acknowledged messages that did not come back. */
  async collect(expected: string[]): Promise<string[]> {
    const missing = new Set(expected);
    const { c, sessionPresent } = await this.login(this.id, false);
    try {
      if (!sessionPresent)
        throw new Error(
          `after kill -9 and restart the keeper's session is gone, and with it ${missing.size} acknowledged messages`,
        );
      const deadline = Date.now() + this.timeoutMs;
      while (missing.size > 0 && Date.now() < deadline) {
        const p = await c.next(Math.max(1, deadline - Date.now())).catch(() => null);
        if (p === null) break;
        if (p.type !== 'publish') continue;
        missing.delete(decoder.decode(p.payload));
        if (p.qos > 0) c.send({ type: 'puback', packetId: p.packetId as number });
      }
      // Checked: this round's session ends here.
      c.send({ type: 'disconnect', properties: { sessionExpiryInterval: 0 } });
    } finally {
      c.close();
    }
    return [...missing];
  }

  /**
   * The whole check: publish, kill -9, restart, reconnect; throws listing what was lost. Then
   * sets up the next round's session.
   */
  async check(count = 8): Promise<void> {
    const acked = await this.publishThenCrash(count);
    const missing = await this.collect(acked);
    await this.setup();
    if (missing.length > 0)
      throw new Error(
        `after kill -9 and restart, ${missing.length} of ${acked.length} acknowledged QoS 1 messages were lost: ${missing.join(' ')}`,
      );
  }
}

/**
 * The ACL file of broker-process.ts, written again as a plain function (matched with the
 * codec's matchTopic, not the broker's ACL code): may `user` with client id `clientId` read
 * `topic`?
 */
export function mayRead(user: string, clientId: string, topic: string): boolean {
  // Pattern rules exist, so a client id with a wildcard character is denied everything.
  if (/[+#]/.test(clientId)) return false;
  const m = (filter: string) => matchTopic(filter, topic);
  if (user === 'alice' && m('alice/secret/#')) return false;
  const own = user === 'alice' ? m('alice/#') || m('public/#') : user === 'bob' ? m('bob/#') : false;
  return own || m(`devices/${clientId}/#`) || m(`users/${user}/inbox`);
}

/**
 * The delivery check: nothing reaches a fuzz connection that its login may not read. A session
 * resumed under a client id another user had (issue 12 point 9: without
 * use_username_as_clientid anyone may take over a client id, and gets what was queued for it)
 * may also bring what that user could read; so the oracle remembers who logged in under each
 * client id while the storage lives, and a login it could not follow (a mutated CONNECT that
 * was accepted) makes it allow whatever any fuzz user could read.
 */
export class AclOracle {
  private readonly owners = new Map<string, Set<string>>();
  private unknownLogin = false;

  /** A login the broker accepted (CONNACK 0); undefined when the fuzz cannot tell who it was. */
  login(who: { user: string; clientId: string } | undefined): void {
    if (who === undefined) {
      this.unknownLogin = true;
      return;
    }
    let users = this.owners.get(who.clientId);
    if (users === undefined) this.owners.set(who.clientId, (users = new Set()));
    users.add(who.user);
  }

  /** Storage thrown away: no session survives. */
  reset(): void {
    this.owners.clear();
    this.unknownLogin = false;
  }

  /** Undefined when the delivery is allowed, else what is wrong with it. */
  check(who: { user: string; clientId: string }, topic: string): string | undefined {
    const { user, clientId } = who;
    if (mayRead(user, clientId, topic)) return undefined;
    for (const other of this.owners.get(clientId) ?? [])
      if (mayRead(other, clientId, topic)) return undefined;
    if (this.unknownLogin)
      for (const u of ['alice', 'bob'])
        for (const c of CLIENT_IDS) if (mayRead(u, c, topic)) return undefined;
    return `${user} (client id '${clientId}') received '${topic}', which the ACL does not let it read`;
  }
}
