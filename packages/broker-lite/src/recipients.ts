/**
 * The sessions one message goes to, each once: a session whose subscriptions overlap on the
 * topic gets one delivery with the highest QoS they grant, retain-as-published if any of them
 * asks for it, and every subscription identifier (MQTT 5 3.3.4). The router owns one and clears
 * it per message; its arrays keep their room from one message to the next (no allocation per
 * message but the identifier arrays of subscriptions that have identifiers).
 */
import type { QoS } from '@mqtt-edge/codec';
import type { Session, Subscription } from './session.ts';

export class Recipients {
  /** Recipients 0 .. size-1, in the order of their first matching subscription. */
  size = 0;
  private readonly sessions: Array<Session | undefined> = [];
  private readonly grants: QoS[] = [];
  private readonly retains: boolean[] = [];
  private readonly idLists: Array<number[] | undefined> = [];
  /**
   * Where a session with several subscriptions sits. Only such a session can match twice (the
   * index holds exactly the sessions' `subs`), so one subscription per session costs no lookup.
   */
  private readonly at = new Map<Session, number>();

  session(i: number): Session {
    return this.sessions[i] as Session;
  }
  qos(i: number): QoS {
    return this.grants[i];
  }
  retain(i: number): boolean {
    return this.retains[i];
  }
  /** Its own array (a queued delivery keeps it); undefined when no subscription has an id. */
  ids(i: number): number[] | undefined {
    return this.idLists[i];
  }

  /** `sub` matched, granting `qos` (already capped by the message's) and `retain`. */
  add(sub: Subscription, qos: QoS, retain: boolean): void {
    const s = sub.session;
    if (s.subscriptionCount > 1) {
      const i = this.at.get(s);
      if (i !== undefined) {
        if (qos > this.grants[i]) this.grants[i] = qos;
        if (retain) this.retains[i] = true;
        if (sub.id !== undefined) {
          const ids = this.idLists[i];
          if (ids === undefined) this.idLists[i] = [sub.id];
          else ids.push(sub.id);
        }
        return;
      }
      this.at.set(s, this.size);
    }
    const n = this.size++;
    this.sessions[n] = s;
    this.grants[n] = qos;
    this.retains[n] = retain;
    this.idLists[n] = sub.id !== undefined ? [sub.id] : undefined;
  }

  /** Empties the set for the next message, letting go of its sessions and identifier arrays. */
  clear(): void {
    const n = this.size;
    for (let i = 0; i < n; i++) {
      this.sessions[i] = undefined;
      this.idLists[i] = undefined;
    }
    this.size = 0;
    if (this.at.size > 0) this.at.clear();
  }
}
