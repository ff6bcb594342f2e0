/** Retained messages: the codec's TopicStore keyed by topic, searched by filter on SUBSCRIBE. */
import { TopicStore } from '@mqtt-edge/codec';
import { type Message, own } from './message.ts';

export class RetainStore {
  private readonly store = new TopicStore<Message>();

  /** Payload and topic bytes of the retained messages ($SYS/broker/store/messages/bytes). */
  bytes = 0;

  get size(): number {
    return this.store.size;
  }

  /** Stores or (empty payload) deletes; returns true when the store changed. */
  set(msg: Message): boolean {
    const old = this.store.get(msg.topic);
    if (old !== undefined) this.bytes -= old.payload.length + old.topic.length;
    if (msg.payload.length === 0) return this.store.delete(msg.topic);
    // A retained copy outlives the publish: its flags are those of a retained message.
    const kept: Message = { ...own(msg), retain: true, storeId: 0, storeRefs: 0, owned: true };
    this.store.set(msg.topic, kept);
    this.bytes += msg.payload.length + msg.topic.length;
    return true;
  }

  get(topic: string): Message | undefined {
    return this.store.get(topic);
  }

  /** Visits retained messages matching a (non-shared) filter, skipping expired ones. */
  match(filter: string, visit: (msg: Message) => void): void {
    const now = Date.now();
    this.store.match(filter, (_topic, msg) => {
      if (msg.expiresAt === 0 || msg.expiresAt > now) visit(msg);
    });
  }

  forEach(visit: (msg: Message) => void): void {
    this.store.forEach((_topic, msg) => {
      visit(msg);
    });
  }
}
