/**
 * Values by topic name, searchable by topic filter: the retained-message store's index, for
 * "which retained topics match this new subscription". A trie keyed by level, so a filter
 * walks only the branches it can match; a literal level is one table lookup.
 */

import { findKid, pushKids } from './level-table.ts';
import { END_VALS, FilterTrie, type Node } from './subscription-index.ts';

const PLUS = 0x2b;
const HASH = 0x23;
const DOLLAR = 0x24;

/** What a node of a stored topic holds: the full topic (what match() hands out) and its value. */
interface Entry<V> {
  topic: string;
  value: V;
}

type StoreNode<V> = Node<Entry<V>>;

/**
 * A map from topic names to values with filter search. Topics are assumed valid names (see
 * validateTopicName); `match` takes a plain (not shared) topic filter: MQTT sends no retained
 * messages for a shared subscription. Visit order is unspecified. Do not change the store from
 * inside a match() visitor (it throws).
 */
export class TopicStore<V> {
  // The level trie of SubscriptionIndex, its `vals` holding one Entry: topic names have no
  // wildcards, so its `+` and `#` fields stay empty.
  declare private readonly trie: FilterTrie<Entry<V>>;
  declare private count: number;
  declare private walking: number;

  constructor() {
    this.trie = new FilterTrie();
    this.count = this.walking = 0;
  }

  get size(): number {
    return this.count;
  }

  /** Trie nodes in use, the root included: 1 when empty. For tests and metrics. */
  get nodeCount(): number {
    return this.trie.nodes;
  }

  set(topic: string, value: V): void {
    this.assertNotWalking();
    const trie = this.trie;
    const node = trie.at(topic, 0, true) as StoreNode<V>;
    if (trie.end !== END_VALS) {
      // A last level of `#` or `+` names no topic (the validators say so first); storing it on
      // the parent would overwrite the parent topic's entry.
      trie.prune();
      throw new RangeError(`wildcard in topic name ${topic}`);
    }
    const e = node.vals as Entry<V> | undefined;
    if (e !== undefined) e.value = value;
    else {
      node.vals = { topic, value };
      this.count++;
    }
  }

  get(topic: string): V | undefined {
    return this.entry(topic)?.value;
  }

  has(topic: string): boolean {
    return this.entry(topic) !== undefined;
  }

  /** Removes `topic`; false when it held nothing. Frees the nodes only it used. */
  delete(topic: string): boolean {
    this.assertNotWalking();
    const trie = this.trie;
    const node = trie.at(topic, 0, false);
    if (node === null || trie.end !== END_VALS || node.vals === undefined) return false;
    node.vals = undefined;
    this.count--;
    trie.prune();
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
    // Stack entries: a node and the filter index where its next level starts; n + 1 once the
    // filter is used up at this node, -1 under a `#` (the node and everything below it).
    const root = this.trie.root;
    const nodes: StoreNode<V>[] = [root];
    const at: number[] = [0];
    while (nodes.length > 0) {
      const node = nodes.pop() as StoreNode<V>;
      const s = at.pop() as number;
      if (s > n) {
        emit(node, visit);
        continue;
      }
      let e = filter.indexOf('/', s);
      if (e < 0) e = n;
      // An empty filter (from forEach, never a valid filter) takes every topic, `$` ones included.
      const c = s < 0 || n === 0 ? HASH : e === s + 1 ? filter.charCodeAt(s) : 0;
      if (c === HASH || c === PLUS) {
        // `#` takes the parent level itself, then every level below.
        if (c === HASH) emit(node, visit);
        const kids: StoreNode<V>[] = [];
        pushKids(node, kids);
        for (const k of kids) {
          // Wildcards in the first level skip topics that start with `$` [MQTT-4.7.2-1].
          if (s === 0 && n > 0 && k.key.charCodeAt(0) === DOLLAR) continue;
          nodes.push(k);
          at.push(c === HASH ? -1 : e + 1);
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

  private entry(topic: string): Entry<V> | undefined {
    const trie = this.trie;
    const node = trie.at(topic, 0, false);
    // A name ending in a `#` or `+` level would end on a wildcard slot: no such topic is stored.
    return node === null || trie.end !== END_VALS ? undefined : (node.vals as Entry<V> | undefined);
  }

  private assertNotWalking(): void {
    if (this.walking > 0) throw new Error('changed during match()');
  }
}

function emit<V>(node: StoreNode<V>, visit: (topic: string, value: V) => void): void {
  const e = node.vals as Entry<V> | undefined;
  if (e !== undefined) visit(e.topic, e.value);
}
