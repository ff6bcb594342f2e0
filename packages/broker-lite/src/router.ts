/**
 * Routing: the subscription index from the codec, one delivery per client however many of its
 * subscriptions overlap (highest QoS, every subscription identifier), one member per shared
 * group (the least loaded connected member, round-robin among equals).
 */
import { SubscriptionIndex, splitShared } from '@mqtt-edge/codec';
import type { Broker } from './broker.ts';
import type { Connection } from './connection.ts';
import { deliver, RouteContext } from './deliver.ts';
import type { Message } from './message.ts';
import { Recipients } from './recipients.ts';
import type { Session, Subscription } from './session.ts';

/**
 * A share group's round-robin position, and how many subscriptions (over every filter and
 * session) hold its name: the entry goes with the last of them, so groups that came and went
 * leave nothing behind.
 */
class ShareGroup {
  next = 0;
  members = 1;
}

export class Router {
  /** Read it freely; change it only through `add` and `remove` (share groups are counted there). */
  readonly index = new SubscriptionIndex<Subscription>();
  // What route() holds for the index's callbacks while it walks the index for one message.
  private readonly recipients = new Recipients();
  private msg: Message | null = null;
  private from: Session | null = null;
  /** A subscription matched, whether or not it is delivered to (route() returns it). */
  private matched = false;
  private readonly ctx = new RouteContext();
  private readonly groups = new Map<string, ShareGroup>();
  /** Subscriptions in share groups, all members ($SYS/broker/shared_subscriptions/count). */
  sharedSubscriptions = 0;
  private routing = false;

  constructor(private readonly b: Broker) {}

  private readonly visit = (sub: Subscription): void => {
    const s = sub.session;
    // A hit sets `matched` once after the walk; only a subscription skipped here must say so.
    if (sub.noLocal && s === this.from) {
      this.matched = true;
      return;
    }
    const msg = this.msg as Message;
    this.recipients.add(sub, sub.qos < msg.qos ? sub.qos : msg.qos, sub.retainAsPublished && msg.retain);
  };

  private readonly visitShared = (group: string, members: readonly Subscription[]): void => {
    this.matched = true;
    const msg = this.msg as Message;
    const n = members.length;
    // The entry exists while the index holds a member; a miss would be a bookkeeping bug, and
    // round-robin from 0 is then still a correct answer.
    const g = this.groups.get(group);
    let start = 0;
    if (g !== undefined) {
      start = g.next % n;
      g.next = start + 1;
    }
    let best: Subscription | null = null;
    let bestLoad = Number.POSITIVE_INFINITY;
    for (let k = 0; k < n; k++) {
      const sub = members[(start + k) % n];
      const s = sub.session;
      if (s.conn === null || !this.readable(s, msg)) continue;
      const load = s.inflightCount + s.queueLength;
      if (load < bestLoad) {
        best = sub;
        bestLoad = load;
        if (load === 0) break;
      }
    }
    if (best === null) {
      // Every member offline: queue on one of them, in turn.
      const sub = members[start];
      if (!sub.session.persistent || !this.readable(sub.session, msg)) return;
      best = sub;
    }
    try {
      deliver(
        this.b,
        best.session,
        msg,
        best.qos < msg.qos ? best.qos : msg.qos,
        best.retainAsPublished && msg.retain,
        best.id !== undefined ? [best.id] : undefined,
        this.ctx,
      );
    } catch (err) {
      this.failed(best.session, msg, err);
    }
  };

  /** Adds a subscription to the index (the only way in: share groups are counted here). */
  add(sub: Subscription): void {
    this.index.add(sub.filter, sub);
    if (!sub.shared) return;
    this.sharedSubscriptions++;
    const name = shareName(sub.filter);
    const g = this.groups.get(name);
    if (g === undefined) this.groups.set(name, new ShareGroup());
    else g.members++;
  }

  /** Removes a subscription from the index; its share group's state goes with its last member. */
  remove(sub: Subscription): void {
    if (!this.index.remove(sub.filter, sub) || !sub.shared) return;
    this.sharedSubscriptions--;
    const name = shareName(sub.filter);
    const g = this.groups.get(name);
    if (g !== undefined && --g.members === 0) this.groups.delete(name);
  }

  /** Share groups with at least one member (their round-robin state). */
  get shareGroupCount(): number {
    return this.groups.size;
  }

  /** One recipient could not be served: it misses this message, the others do not. */
  private failed(s: Session, msg: Message, err: unknown): void {
    const b = this.b;
    b.counters.dropped++;
    b.counters.drops.delivery_failed++;
    b.log('error', 'delivery failed; message dropped for this client', {
      clientId: s.clientId,
      topic: msg.topic,
      error: err instanceof Error ? err.message : String(err),
    });
  }

  /** May this shared-group member read `msg`? An ACL that throws counts as no (another member may). */
  private readable(s: Session, msg: Message): boolean {
    const acl = this.b.aclFor(s);
    if (acl === undefined || s.internal) return true;
    try {
      return acl.allowed('read', { clientId: s.clientId, username: s.username }, msg.topic);
    } catch (err) {
      this.b.log('error', 'read access check failed', {
        clientId: s.clientId,
        topic: msg.topic,
        error: err instanceof Error ? err.message : String(err),
      });
      return false;
    }
  }

  /**
   * Delivers `msg` to every matching session. `from` is the publisher's session (no local),
   * `publisher` its connection, which backpressure may pause (null: the broker publishes).
   * Returns whether a subscription matched, delivered to or not (no local, the ACL's read): an
   * MQTT 5 QoS 1 publisher hears 0x10 otherwise, as from Mosquitto.
   */
  route(msg: Message, from: Session | null, publisher: Connection | null = null): boolean {
    if (this.routing) {
      // Not expected (no handler routes from inside a delivery), but never mix two messages'
      // recipients; whether it matches is not known yet, so not "no subscribers".
      queueMicrotask(() => this.route(msg, from));
      return true;
    }
    this.routing = true;
    const b = this.b;
    this.msg = msg;
    this.from = from;
    this.matched = false;
    const ctx = this.ctx;
    ctx.publisher = publisher;
    ctx.cache.clear();
    const r = this.recipients;
    try {
      this.index.match(msg.topic, this.visit, this.visitShared);
      const n = r.size;
      if (n > 0) this.matched = true;
      const shared = b.accessControl;
      // per_listener_settings: each session's listener ACL (one flag read per recipient else)
      const split = b.perListener;
      // One recipient's failure (an ACL backend that throws, a message it cannot be sent) must
      // not cost the recipients after it, nor the publisher its acknowledgement. The try is
      // entered once per message and again only after a failure, not once per recipient.
      let i = 0;
      while (i < n) {
        try {
          for (; i < n; i++) {
            const s = r.session(i);
            const acl = split && s.security !== null ? s.security.accessControl : shared;
            if (
              acl !== undefined &&
              !s.internal &&
              !acl.allowed('read', { clientId: s.clientId, username: s.username }, msg.topic)
            )
              continue;
            deliver(b, s, msg, r.qos(i), r.retain(i), r.ids(i), ctx);
          }
        } catch (err) {
          this.failed(r.session(i), msg, err);
          i++;
        }
      }
      return this.matched;
    } finally {
      r.clear();
      ctx.publisher = null;
      this.msg = null;
      this.from = null;
      this.routing = false;
    }
  }
}

function shareName(filter: string): string {
  return splitShared(filter)?.group ?? filter;
}
