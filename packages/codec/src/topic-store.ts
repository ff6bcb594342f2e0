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
  key: string;
  hash: number;
  next: StoreNode<V> | null = null;
  kids: StoreNode<V> | KidTable<StoreNode<V>> | null = null;
  nkids = 0;
  /** The full topic when a value is stored here (it is also what match() hands out). */
  topic: string | null = null;
  value: V | undefined = undefined;
  constructor(key: string) {
    this.key = key;
    this.hash = levelHash(key, 0, key.length);
  }
}

/**
 * A map from topic names to values with filter search. Topics are assumed valid names (see
 * validateTopicName); `match` takes a plain (not shared) topic filter: MQTT sends no retained
 * messages for a shared subscription. Visit order is unspecified. Do not change the store from
 * inside a match() visitor (it throws).
 */
export class TopicStore<V> {
  private readonly root = new StoreNode<V>('');
  private count = 0;
  private nodes = 1;
  private walking = 0;
  private readonly path: StoreNode<V>[] = [];

  get size(): number {
    return this.count;
  }

  /** Trie nodes in use, the root included: 1 when empty. For tests and metrics. */
  get nodeCount(): number {
    return this.nodes;
  }

  set(topic: string, value: V): void {
    this.assertNotWalking();
    let node = this.root;
    const n = topic.length;
    let s = 0;
    for (;;) {
      let e = topic.indexOf('/', s);
      if (e < 0) e = n;
      let kid = findKid(node, topic, s, e, -1);
      if (kid === null) {
        kid = new StoreNode<V>(topic.slice(s, e));
        addKid(node, kid);
        this.nodes++;
      }
      node = kid;
      if (e === n) break;
      s = e + 1;
    }
    if (node.topic === null) {
      this.count++;
      node.topic = topic;
    }
    node.value = value;
  }

  get(topic: string): V | undefined {
    const node = this.find(topic, false);
    return node === null ? undefined : node.value;
  }

  has(topic: string): boolean {
    return this.find(topic, false) !== null;
  }

  /** Removes `topic`; false when it held nothing. Frees the nodes only it used. */
  delete(topic: string): boolean {
    this.assertNotWalking();
    const node = this.find(topic, true);
    if (node === null) return false;
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
    this.walking++;
    try {
      const stack: StoreNode<V>[] = [this.root];
      while (stack.length > 0) {
        const node = stack.pop() as StoreNode<V>;
        if (node.topic !== null) visit(node.topic, node.value as V);
        pushKids(node, stack);
      }
    } finally {
      this.walking--;
    }
  }

  private walk(filter: string, visit: (topic: string, value: V) => void): void {
    const n = filter.length;
    // Stack entries: a node and the filter index where its next level starts (n + 1: the
    // filter is used up at this node).
    const nodes: StoreNode<V>[] = [this.root];
    const at: number[] = [0];
    const everything: StoreNode<V>[] = [];
    while (nodes.length > 0) {
      const node = nodes.pop() as StoreNode<V>;
      const s = at.pop() as number;
      if (s > n) {
        if (node.topic !== null) visit(node.topic, node.value as V);
        continue;
      }
      let e = filter.indexOf('/', s);
      if (e < 0) e = n;
      const first = node === this.root;
      if (e === s + 1 && filter.charCodeAt(s) === HASH) {
        // The parent level itself, then every level below.
        if (node.topic !== null) visit(node.topic, node.value as V);
        pushKids(node, everything);
        while (everything.length > 0) {
          const d = everything.pop() as StoreNode<V>;
          if (first && isDollar(d)) continue;
          if (d.topic !== null) visit(d.topic, d.value as V);
          pushDescendants(d, everything, visit);
        }
        continue;
      }
      if (e === s + 1 && filter.charCodeAt(s) === PLUS) {
        const kids: StoreNode<V>[] = [];
        pushKids(node, kids);
        for (const k of kids) {
          if (first && isDollar(k)) continue;
          nodes.push(k);
          at.push(e + 1);
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

  private find(topic: string, keepPath: boolean): StoreNode<V> | null {
    const path = this.path;
    if (keepPath) path.length = 0;
    let node = this.root;
    const n = topic.length;
    let s = 0;
    for (;;) {
      if (keepPath) path.push(node);
      let e = topic.indexOf('/', s);
      if (e < 0) e = n;
      const kid = findKid(node, topic, s, e, -1);
      if (kid === null) return null;
      node = kid;
      if (e === n) break;
      s = e + 1;
    }
    if (node.topic === null) return null;
    if (keepPath) path.push(node);
    return node;
  }

  private assertNotWalking(): void {
    if (this.walking > 0) throw new Error('TopicStore changed during match(): apply changes after it');
  }
}

function isDollar<V>(node: StoreNode<V>): boolean {
  return node.key.length > 0 && node.key.charCodeAt(0) === DOLLAR;
}

/**
 * Visits everything below `d` (not `d` itself) with the caller's stack. Kept apart from the
 * first-level loop so the `$` test runs only on the root's children.
 */
function pushDescendants<V>(
  d: StoreNode<V>,
  stack: StoreNode<V>[],
  visit: (topic: string, value: V) => void,
): void {
  const base = stack.length;
  pushKids(d, stack);
  while (stack.length > base) {
    const x = stack.pop() as StoreNode<V>;
    if (x.topic !== null) visit(x.topic, x.value as V);
    pushKids(x, stack);
  }
}
