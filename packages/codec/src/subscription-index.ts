/**
 * The subscription index: topic filter -> values, and topic -> every value whose filter
 * matches. A trie keyed by level; `+` children and `#` values sit on their own fields of the
 * node, so a topic walks only the branches that can match. Shared subscriptions live in a
 * second trie of the same shape whose values are groups, so brokers without them pay nothing.
 */
import { SHARED_PREFIX, splitShared } from './topic.ts';
import { addKid, findKid, HASH_INIT, hashEnd, hashStep, type LevelNode, removeKid } from './topic-match.ts';

const SLASH = 0x2f;
const PLUS = 0x2b;
const HASH = 0x23;
const DOLLAR = 0x24;

/** A bucket this long gets a value -> position map, so add and remove stay O(1). */
const POSITIONS_AT = 32;

class Node<T> implements LevelNode<Node<T>> {
  key: string;
  next: Node<T> | null = null;
  kids: Node<T> | Array<Node<T> | null> | null = null;
  nkids = 0;
  /** The `+` child. */
  plus: Node<T> | null = null;
  /** Values whose filter ends at this node. */
  vals: T[] | null = null;
  /** Values whose filter is this node's path followed by `/#` (or `#` alone, at the root). */
  hvals: T[] | null = null;
  constructor(key: string) {
    this.key = key;
  }
}

interface Group<V> {
  group: string;
  members: V[];
}

/**
 * A trie from filters to sets of T. Add and remove walk the filter by index; only new nodes
 * take a slice of it for their key.
 */
class FilterTrie<T> {
  readonly root = new Node<T>('');
  nodes = 1;
  /** Position maps of the long buckets, keyed by the bucket array itself. */
  private readonly positions = new Map<T[], Map<T, number>>();
  private path: Node<T>[] = [];

  /** The bucket for `filter` (from index `start`), created on demand. */
  bucketFor(filter: string, start: number): { node: Node<T>; hash: boolean } {
    let node = this.root;
    const n = filter.length;
    let s = start;
    for (;;) {
      let e = filter.indexOf('/', s);
      if (e < 0) e = n;
      if (e === s + 1 && filter.charCodeAt(s) === HASH && e === n) return { node, hash: true };
      let kid: Node<T> | null;
      if (e === s + 1 && filter.charCodeAt(s) === PLUS) {
        kid = node.plus;
        if (kid === null) {
          kid = new Node<T>('+');
          node.plus = kid;
          this.nodes++;
        }
      } else {
        kid = findKid(node, filter, s, e, -1);
        if (kid === null) {
          kid = new Node<T>(filter.slice(s, e));
          addKid(node, kid);
          this.nodes++;
        }
      }
      node = kid;
      if (e === n) return { node, hash: false };
      s = e + 1;
    }
  }

  /**
   * The node for `filter` (from `start`) without creating any, with the path to it left in
   * this.path (root first) for pruning; null when the filter has no node.
   */
  find(filter: string, start: number): { node: Node<T>; hash: boolean } | null {
    const path = this.path;
    path.length = 0;
    let node = this.root;
    const n = filter.length;
    let s = start;
    for (;;) {
      path.push(node);
      let e = filter.indexOf('/', s);
      if (e < 0) e = n;
      if (e === s + 1 && filter.charCodeAt(s) === HASH && e === n) return { node, hash: true };
      const kid = e === s + 1 && filter.charCodeAt(s) === PLUS ? node.plus : findKid(node, filter, s, e, -1);
      if (kid === null) return null;
      node = kid;
      if (e === n) {
        path.push(node);
        return { node, hash: false };
      }
      s = e + 1;
    }
  }

  /** Frees the nodes of this.path (from the deepest) that hold nothing any more. */
  prune(): void {
    const path = this.path;
    for (let i = path.length - 1; i > 0; i--) {
      const node = path[i];
      if (node.vals !== null || node.hvals !== null || node.plus !== null || node.nkids !== 0) break;
      const parent = path[i - 1];
      if (parent.plus === node) parent.plus = null;
      else removeKid(parent, node);
      this.nodes--;
    }
    path.length = 0;
  }

  /** Adds `v` to `bucket` unless present; the bucket (new when `bucket` was null). */
  bucketAdd(bucket: T[] | null, v: T): { bucket: T[]; added: boolean } {
    if (bucket === null) return { bucket: [v], added: true };
    const pos = bucket.length >= POSITIONS_AT ? this.positions.get(bucket) : undefined;
    if (pos !== undefined) {
      if (pos.has(v)) return { bucket, added: false };
      pos.set(v, bucket.length);
    } else {
      if (bucket.indexOf(v) >= 0) return { bucket, added: false };
      if (bucket.length + 1 >= POSITIONS_AT) {
        const map = new Map<T, number>();
        for (let i = 0; i < bucket.length; i++) map.set(bucket[i], i);
        map.set(v, bucket.length);
        this.positions.set(bucket, map);
      }
    }
    bucket.push(v);
    return { bucket, added: true };
  }

  /**
   * Removes `v` from `bucket` (swapping the last value into its place); -1 when absent, else
   * the length left.
   */
  bucketRemove(bucket: T[], v: T): number {
    const pos = bucket.length >= POSITIONS_AT ? this.positions.get(bucket) : undefined;
    let i: number;
    if (pos !== undefined) {
      const at = pos.get(v);
      if (at === undefined) return -1;
      i = at;
      pos.delete(v);
    } else {
      i = bucket.indexOf(v);
      if (i < 0) return -1;
    }
    const last = bucket.length - 1;
    if (i !== last) {
      const moved = bucket[last];
      bucket[i] = moved;
      if (pos !== undefined) pos.set(moved, i);
    }
    bucket.pop();
    if (pos !== undefined && bucket.length < POSITIONS_AT / 2) this.positions.delete(bucket);
    return bucket.length;
  }
}

/** Reusable per-walk state: level ends and hashes of the topic, and the DFS stack. */
class Walk {
  ends = new Int32Array(16);
  hashes = new Int32Array(16);
  levels = 0;
  dollar = false;
  stackNodes: unknown[] = [];
  stackLevels = new Int32Array(32);

  /** Splits `topic` into level ends and hashes in one pass over its characters. */
  load(topic: string): void {
    const n = topic.length;
    let ends = this.ends;
    let hashes = this.hashes;
    let l = 0;
    let h = HASH_INIT;
    for (let i = 0; i <= n; i++) {
      const c = i < n ? topic.charCodeAt(i) : SLASH;
      if (c === SLASH) {
        if (l === ends.length) {
          ends = grow(ends);
          hashes = grow(hashes);
          this.ends = ends;
          this.hashes = hashes;
        }
        ends[l] = i;
        hashes[l] = hashEnd(h);
        l++;
        h = HASH_INIT;
      } else {
        h = hashStep(h, c);
      }
    }
    this.levels = l;
    this.dollar = n > 0 && topic.charCodeAt(0) === DOLLAR;
  }
}

/**
 * Depth-first over the nodes that match the loaded topic, with an explicit stack: a filter
 * may have 32,768 levels, more than the call stack would take.
 */
function walkTrie<T>(root: Node<T>, walk: Walk, topic: string, visit: (value: T) => void): void {
  const ends = walk.ends;
  const hashes = walk.hashes;
  const levels = walk.levels;
  const dollar = walk.dollar;
  const nodes = walk.stackNodes as Array<Node<T> | null>;
  let depths = walk.stackLevels;
  nodes[0] = root;
  depths[0] = 0;
  let sp = 1;
  let high = 1;
  while (sp > 0) {
    sp--;
    const node = nodes[sp] as Node<T>;
    const li = depths[sp];
    const hv = node.hvals;
    if (hv !== null && !(li === 0 && dollar)) for (let i = 0; i < hv.length; i++) visit(hv[i]);
    if (li === levels) {
      const v = node.vals;
      if (v !== null) for (let i = 0; i < v.length; i++) visit(v[i]);
      continue;
    }
    if (sp + 2 > depths.length) {
      depths = grow(depths);
      walk.stackLevels = depths;
    }
    if (node.nkids !== 0) {
      const start = li === 0 ? 0 : ends[li - 1] + 1;
      const kid = findKid(node, topic, start, ends[li], hashes[li]);
      if (kid !== null) {
        nodes[sp] = kid;
        depths[sp] = li + 1;
        sp++;
      }
    }
    const plus = node.plus;
    if (plus !== null && !(li === 0 && dollar)) {
      nodes[sp] = plus;
      depths[sp] = li + 1;
      sp++;
    }
    if (sp > high) high = sp;
  }
  // Drop the references so removed nodes (and their values) can be collected.
  for (let i = 0; i < high; i++) nodes[i] = null;
}

function grow(a: Int32Array): Int32Array<ArrayBuffer> {
  const b = new Int32Array(a.length * 2);
  b.set(a);
  return b;
}

/**
 * Subscriptions by topic filter. `V` is opaque: a broker keeps its own subscription record
 * there (client, QoS, no local, retain as published, retain handling, subscription
 * identifier). A value is held at most once per filter (adding it again is a no-op); the same
 * value on two filters is two subscriptions.
 *
 * match() visits each normal value once per matching subscription: a value added on two
 * overlapping filters (`a/+` and `a/#`) is visited twice, and the broker dedupes per client
 * (MQTT 5 section 3.3.4 lets it deliver once with the highest QoS, or once per subscription).
 * Shared subscriptions `$share/{group}/{filter}` are delivered once per matching group with
 * every member whose filter matches, so the broker picks one member per group per message.
 *
 * Do not add or remove while match() is visiting (it throws): collect and apply afterwards.
 * Visit order is unspecified.
 */
export class SubscriptionIndex<V> {
  private readonly trie = new FilterTrie<V>();
  private readonly shared = new FilterTrie<Group<V>>();
  private sharedCount = 0;
  private count = 0;
  private readonly walk = new Walk();
  private walking = 0;
  private readonly sharedHits: Array<Group<V> | null> = [];
  private readonly pushHit = (g: Group<V>): void => {
    this.sharedHits.push(g);
  };

  /** Number of (filter, value) pairs held, shared ones included. */
  get size(): number {
    return this.count;
  }

  isEmpty(): boolean {
    return this.count === 0;
  }

  /** Trie nodes in use (both tries, roots included): 2 when empty. For tests and metrics. */
  get nodeCount(): number {
    return this.trie.nodes + this.shared.nodes;
  }

  /**
   * Subscribes `value` to `filter` (validated by the caller: see validateTopicFilter). A
   * `$share/{group}/{filter}` filter joins `value` to that group.
   */
  add(filter: string, value: V): void {
    this.assertNotWalking();
    if (filter.startsWith(SHARED_PREFIX)) {
      const sf = splitShared(filter);
      if (sf === null) throw new RangeError(`malformed shared subscription filter '${filter}'`);
      this.addShared(sf.group, filter, SHARED_PREFIX.length + sf.group.length + 1, value);
      return;
    }
    const trie = this.trie;
    const at = trie.bucketFor(filter, 0);
    const node = at.node;
    if (at.hash) {
      const r = trie.bucketAdd(node.hvals, value);
      node.hvals = r.bucket;
      if (r.added) this.count++;
    } else {
      const r = trie.bucketAdd(node.vals, value);
      node.vals = r.bucket;
      if (r.added) this.count++;
    }
  }

  /** Unsubscribes `value` (by identity) from `filter`; false when it was not subscribed. */
  remove(filter: string, value: V): boolean {
    this.assertNotWalking();
    if (filter.startsWith(SHARED_PREFIX)) {
      const sf = splitShared(filter);
      if (sf === null) return false;
      return this.removeShared(sf.group, filter, SHARED_PREFIX.length + sf.group.length + 1, value);
    }
    const trie = this.trie;
    const at = trie.find(filter, 0);
    if (at === null) return false;
    const node = at.node;
    const bucket = at.hash ? node.hvals : node.vals;
    if (bucket === null) return false;
    const left = trie.bucketRemove(bucket, value);
    if (left < 0) return false;
    if (left === 0) {
      if (at.hash) node.hvals = null;
      else node.vals = null;
      trie.prune();
    }
    this.count--;
    return true;
  }

  /**
   * Calls `visit` for every normal subscription whose filter matches topic name `topic`, and
   * `visitShared` once per shared group with at least one matching member. `members` is the
   * index's own array when one filter of the group matched (read it during the call only),
   * or a fresh merged array without duplicates when several did.
   */
  match(
    topic: string,
    visit: (value: V) => void,
    visitShared?: (group: string, members: readonly V[]) => void,
  ): void {
    let walk = this.walk;
    // A visitor may match again (a bridge, a rule engine): the nested walk gets its own state.
    if (this.walking > 0) walk = new Walk();
    this.walking++;
    try {
      walk.load(topic);
      if (this.count - this.sharedCount > 0) walkTrie(this.trie.root, walk, topic, visit);
      if (this.sharedCount > 0 && visitShared !== undefined) {
        const nested = this.walking > 1;
        const hits = nested ? [] : this.sharedHits;
        walkTrie(this.shared.root, walk, topic, nested ? (g) => hits.push(g) : this.pushHit);
        try {
          emitGroups(hits, visitShared);
        } finally {
          hits.length = 0;
        }
      }
    } finally {
      this.walking--;
    }
  }

  private addShared(group: string, filter: string, start: number, value: V): void {
    const trie = this.shared;
    const at = trie.bucketFor(filter, start);
    const node = at.node;
    let groups = at.hash ? node.hvals : node.vals;
    let entry: Group<V> | null = null;
    if (groups !== null) {
      for (let i = 0; i < groups.length; i++) {
        if (groups[i].group === group) {
          entry = groups[i];
          break;
        }
      }
    }
    if (entry === null) {
      entry = { group, members: [] };
      if (groups === null) groups = [entry];
      else groups.push(entry);
      if (at.hash) node.hvals = groups;
      else node.vals = groups;
    }
    const before = entry.members.length;
    const members = this.trie.bucketAdd(entry.members, value);
    entry.members = members.bucket;
    if (entry.members.length > before) {
      this.count++;
      this.sharedCount++;
    }
  }

  private removeShared(group: string, filter: string, start: number, value: V): boolean {
    const trie = this.shared;
    const at = trie.find(filter, start);
    if (at === null) return false;
    const node = at.node;
    const groups = at.hash ? node.hvals : node.vals;
    if (groups === null) return false;
    let gi = -1;
    for (let i = 0; i < groups.length; i++) {
      if (groups[i].group === group) {
        gi = i;
        break;
      }
    }
    if (gi < 0) return false;
    const entry = groups[gi];
    const left = this.trie.bucketRemove(entry.members, value);
    if (left < 0) return false;
    this.count--;
    this.sharedCount--;
    if (left === 0) {
      groups[gi] = groups[groups.length - 1];
      groups.pop();
      if (groups.length === 0) {
        if (at.hash) node.hvals = null;
        else node.vals = null;
        trie.prune();
      }
    }
    return true;
  }

  private assertNotWalking(): void {
    if (this.walking > 0) {
      throw new Error('SubscriptionIndex changed during match(): collect changes and apply them after');
    }
  }
}

/**
 * Delivers each group once. A group seen on several matching filters gets one merged member
 * list without duplicates; that is the only case that allocates.
 */
function emitGroups<V>(
  hits: Array<Group<V> | null>,
  visitShared: (group: string, members: readonly V[]) => void,
): void {
  const k = hits.length;
  if (k === 1) {
    const g = hits[0] as Group<V>;
    visitShared(g.group, g.members);
    return;
  }
  let byGroup: Map<string, number> | null = null;
  if (k > 16) {
    byGroup = new Map();
    for (let i = 0; i < k; i++) {
      const g = (hits[i] as Group<V>).group;
      byGroup.set(g, (byGroup.get(g) ?? 0) + 1);
    }
  }
  for (let i = 0; i < k; i++) {
    const e = hits[i];
    if (e === null) continue;
    let merged: V[] | null = null;
    if (byGroup === null || (byGroup.get(e.group) as number) > 1) {
      for (let j = i + 1; j < k; j++) {
        const f = hits[j];
        if (f === null || f.group !== e.group) continue;
        if (merged === null) merged = e.members.slice();
        for (const m of f.members) if (merged.indexOf(m) < 0) merged.push(m);
        hits[j] = null;
      }
    }
    visitShared(e.group, merged ?? e.members);
  }
}
