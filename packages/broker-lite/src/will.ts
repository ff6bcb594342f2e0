/**
 * Will messages: published when a connection ends without a normal DISCONNECT, at once or
 * after the MQTT 5 will delay (cancelled if the client comes back to its session in time,
 * sent early if the session ends first).
 */
import type { Properties, Will } from '@mqtt-edge/codec';
import type { Broker } from './broker.ts';
import { makeMessage } from './message.ts';
import type { ListenerSecurity } from './options.ts';
import { clientMayWriteSys } from './sys.ts';

interface Pending {
  will: Will;
  username: string | undefined;
  /** The ACL of the listener it came in on (per_listener_settings); null: the broker's. */
  security: ListenerSecurity | null;
  timer: NodeJS.Timeout;
  /** Wall-clock ms the will is due (kept in the persistence log across a crash). */
  dueAt: number;
  /**
   * Due because the session expires then (its expiry interval is shorter than the will delay):
   * the session ends with the will, not at the next expiry sweep up to a second later, so that
   * no client resumes a session whose will said it was over (Mosquitto does the same).
   */
  endsSession: boolean;
}

export class WillTimers {
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly b: Broker) {}

  get size(): number {
    return this.pending.size;
  }

  /**
   * Publishes `will` for `clientId` now, or after `delaySeconds`; `endsSession`: the session
   * expires at that moment too, and ends then.
   */
  schedule(
    clientId: string,
    username: string | undefined,
    will: Will,
    delaySeconds: number,
    security: ListenerSecurity | null = null,
    endsSession = false,
  ): void {
    this.cancel(clientId);
    if (delaySeconds <= 0) {
      publishWill(this.b, clientId, username, will, security);
      return;
    }
    const dueAt = Date.now() + delaySeconds * 1000;
    this.start(clientId, username, will, dueAt, security, endsSession);
    this.b.persist?.willPut(clientId, username, will, dueAt);
  }

  /** A will recovered from the log: due at `dueAt` (at once when that has passed). */
  restore(clientId: string, username: string | undefined, will: Will, dueAt: number): void {
    this.start(clientId, username, will, dueAt);
  }

  private start(
    clientId: string,
    username: string | undefined,
    will: Will,
    dueAt: number,
    security: ListenerSecurity | null = null,
    endsSession = false,
  ): void {
    const ms = Math.max(0, Math.min(dueAt - Date.now(), 2 ** 31 - 1));
    const timer = setTimeout(() => this.due(clientId), ms);
    timer.unref();
    this.pending.set(clientId, { will, username, security, timer, dueAt, endsSession });
  }

  private due(clientId: string): void {
    const s = this.pending.get(clientId)?.endsSession ? this.b.sessions.get(clientId) : undefined;
    // endSession sends the will (fire) once the session is gone.
    if (s !== undefined && s.conn === null) this.b.endSession(s);
    else this.fire(clientId);
  }

  /** Pending wills, for the persistence snapshot. */
  forEach(fn: (clientId: string, username: string | undefined, will: Will, dueAt: number) => void): void {
    for (const [id, p] of this.pending) fn(id, p.username, p.will, p.dueAt);
  }

  /** The client is back in time: its will is not sent. */
  cancel(clientId: string): void {
    const p = this.pending.get(clientId);
    if (p === undefined) return;
    clearTimeout(p.timer);
    this.pending.delete(clientId);
    this.b.persist?.willDel(clientId);
  }

  /** The session ended (or the delay passed): send the pending will now. */
  fire(clientId: string): void {
    const p = this.pending.get(clientId);
    if (p === undefined) return;
    clearTimeout(p.timer);
    this.pending.delete(clientId);
    this.b.persist?.willDel(clientId);
    publishWill(this.b, clientId, p.username, p.will, p.security);
  }

  clear(): void {
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
  }
}

export function publishWill(
  b: Broker,
  clientId: string,
  username: string | undefined,
  will: Will,
  security: ListenerSecurity | null = null,
): void {
  if (!clientMayWriteSys(will.topic)) {
    b.log('notice', "will denied: $SYS topics are the broker's own", { clientId, topic: will.topic });
    return;
  }
  // A will restored from disk has no listener: under per_listener_settings the broker's ACL is
  // every listener's together (config-build.ts).
  const acl = security !== null ? security.accessControl : b.accessControl;
  if (acl !== undefined && !acl.allowed('write', { clientId, username }, will.topic)) {
    b.log('notice', 'will denied by the ACL', { clientId, topic: will.topic });
    return;
  }
  let props: Properties | undefined;
  if (will.properties !== undefined) {
    const { willDelayInterval: _d, ...rest } = will.properties;
    for (const _k in rest) {
      props = rest;
      break;
    }
  }
  b.log('information', 'sending will', { clientId, topic: will.topic });
  b.publish(makeMessage(will.topic, will.payload, will.qos, will.retain, props, Date.now()));
}
