/**
 * Values by topic name, searchable by topic filter: the retained-message store's index, for
 * "which retained topics match this new subscription". A trie keyed by level, so a filter
 * walks only the branches it can match; a literal level is one table lookup.
 */
import {
  addKid,
  findKid,
  type KidTable,
  type LevelNode,
  levelHash,
  pushKids,
  removeKid,
} from './topic-match.ts';

const PLUS = 0x2b;
const HASH = 0x23;
const DOLLAR = 0x24;

class StoreNode<V> implements LevelNode<StoreNode<V>> {
  // Fields are assigned in the constructor, not declared as class fields: an ES2020 bundle
  // lowers each class field to a defineProperty helper call (bigger and slower).
  declare key: string;
  declare hash: number;
  declare next: StoreNode<V> | null;
  declare kids: StoreNode<V> | KidTable<StoreNode<V>> | null;
  declare nkids: number;
  /** The full topic when a value is stored here (it is also what match() hands out). */
  declare topic: string | null;
  declare value: V | undefined;
  constructor(key: string) {
    this.key = key;
    this.hash = levelHash(key, 0, key.length);
    this.next = this.kids = null;
    this.nkids = 0;
    this.topic = null;
    this.value = undefined;
  }
}

/**
 * A map from topic names to values with filter search. Topics are assumed valid names (see
 * validateTopicName); `match` takes a plain (not shared) topic filter: MQTT sends no retained
 * messages for a shared subscription. Visit order is unspecified. Do not change the store from
 * inside a match() visitor (it throws).
 */
export class TopicStore<V> {
  declare private readonly root: StoreNode<V>;
  declare private count: number;
  declare private nodes: number;
  declare private walking: number;
  declare private readonly path: StoreNode<V>[];

  constructor() {
    this.root = new StoreNode<V>('');
    this.count = this.walking = 0;
    this.nodes = 1;
    this.path = [];
  }

  get size(): number {
    return this.count;
  }

  /** Trie nodes in use, the root included: 1 when empty. For tests and metrics. */
  get nodeCount(): number {
    return this.nodes;
  }

  set(topic: string, value: V): void {
    this.assertNotWalking();
    const node = this.at(topic, true) as StoreNode<V>;
    if (node.topic === null) {
      this.count++;
      node.topic = topic;
    }
    node.value = value;
  }

  get(topic: string): V | undefined {
    return this.at(topic, false)?.value;
  }

  has(topic: string): boolean {
    return this.at(topic, false)?.topic != null;
  }

  /** Removes `topic`; false when it held nothing. Frees the nodes only it used. */
  delete(topic: string): boolean {
    this.assertNotWalking();
    const node = this.at(topic, false);
    if (node == null || node.topic === null) return false;
    node.topic = null;
    node.value = undefined;
    this.count--;
    const path = this.path;
    for (let i = path.length - 1; i > 0; i--) {
      const n = path[i];
      if (n.topic !== null || n.nkids !== 0) break;
      removeKid(path[i - 1], n);
      this.nodes--;
    }
    path.length = 0;
    return true;
  }

  /**
   * Calls `visit(topic, value)` for every stored topic that topic filter `filter` matches,
   * by the spec's rules (`+` one level, `#` the parent and below, wildcards in the first level
   * skip topics that start with `$`). Walks only matching branches, with an explicit stack:
   * no recursion, whatever the depth.
   */
  match(filter: string, visit: (topic: string, value: V) => void): void {
    this.walking++;
    try {
      this.walk(filter, visit);
    } finally {
      this.walking--;
    }
  }

  /** Calls `visit` for every stored topic. */
  forEach(visit: (topic: string, value: V) => void): void {
    this.match('', visit);
  }

  private walk(filter: string, visit: (topic: string, value: V) => void): void {
    const n = filter.length;
    // Stack entries: a node and the filter index where its next level starts (n + 1: the
    // filter is used up at this node).
    const nodes: StoreNode<V>[] = [this.root];
    const at: number[] = [0];
    while (nodes.length > 0) {
      const node = nodes.pop() as StoreNode<V>;
      const s = at.pop() as number;
      if (s > n) {
        if (node.topic !== null) visit(node.topic, node.value as V);
        continue;
      }
      let e = filter.indexOf('/', s);
      if (e < 0) e = n;
      // An empty filter (from forEach, never a valid filter) takes every topic, `$` ones included.
      const c = n === 0 ? HASH : e === s + 1 ? filter.charCodeAt(s) : 0;
      if (c === HASH || c === PLUS) {
        // Wildcards in the first level skip topics that start with `$` [MQTT-4.7.2-1].
        const kids: StoreNode<V>[] = [];
        pushKids(node, kids);
        if (node === this.root && n > 0)
          for (let i = kids.length - 1; i >= 0; i--) if (isDollar(kids[i])) kids.splice(i, 1);
        if (c === PLUS) {
          for (const k of kids) {
            nodes.push(k);
            at.push(e + 1);
          }
          continue;
        }
        // The parent level itself, then every level below.
        if (node.topic !== null) visit(node.topic, node.value as V);
        while (kids.length > 0) {
          const d = kids.pop() as StoreNode<V>;
          if (d.topic !== null) visit(d.topic, d.value as V);
          pushKids(d, kids);
        }
        continue;
      }
      const kid = findKid(node, filter, s, e, -1);
      if (kid !== null) {
        nodes.push(kid);
        at.push(e + 1);
      }
    }
  }

  /**
   * The node of `topic` (created when `make`), or null; the path to it, root first, is left
   * in this.path for delete() (and cleared by the next call).
   */
  private at(topic: string, make: boolean): StoreNode<V> | null {
    const path = this.path;
    path.length = 0;
    let node = this.root;
    const n = topic.length;
    let s = 0;
    for (;;) {
      path.push(node);
      let e = topic.indexOf('/', s);
      if (e < 0) e = n;
      let kid = findKid(node, topic, s, e, -1);
      if (kid === null) {
        if (!make) return null;
        kid = new StoreNode<V>(topic.slice(s, e));
        addKid(node, kid);
        this.nodes++;
      }
      node = kid;
      if (e === n) {
        path.push(node);
        return node;
      }
      s = e + 1;
    }
  }

  private assertNotWalking(): void {
    if (this.walking > 0) throw new Error('changed during match()');
  }
}

function isDollar<V>(node: StoreNode<V>): boolean {
  return node.key.length > 0 && node.key.charCodeAt(0) === DOLLAR;
}
