/**
 * The subscription index: topic filter -> values, and topic -> every value whose filter
 * matches. Filters without wildcards sit in a hash table keyed by the whole filter; the rest
 * in a trie keyed by level whose `+` children and `#` values sit on their own fields of the
 * node, so a topic walks only the branches that can match. Shared subscriptions live in a
 * second trie of the same shape whose values are groups, so brokers without them pay nothing.
 */
import { ExactTable } from './exact-table.ts';
import {
  addKid,
  findKid,
  HASH_INIT,
  hashEnd,
  hashStep,
  type KidTable,
  keyIs,
  type LevelNode,
  LIST_MAX,
  levelHash,
  pushKids,
  removeKid,
} from './level-table.ts';
import { PathBloom } from './path-bloom.ts';
import { SHARED_PREFIX, splitShared } from './topic.ts';
import { hasWildcard } from './topic-match.ts';

const SLASH = 0x2f;
const PLUS = 0x2b;
const HASH = 0x23;
const DOLLAR = 0x24;

/**
 * Two or more values of one filter. A filter with a single value (the common case: one client
 * per device topic) holds the value itself, without an array: less memory, fewer pointers to
 * chase on a match. Values are opaque, so a Many (a class nobody else can make) marks the set.
 * `vals` is what a match iterates; `pos` (value -> index in vals) keeps add and remove O(1).
 */
class Many<T> {
  // Fields are assigned in constructors, not declared as class fields, throughout: an ES2020
  // bundle lowers each class field to a defineProperty helper call (bigger and slower).
  declare readonly vals: T[];
  declare readonly pos: Map<T, number>;
  constructor() {
    this.vals = [];
    this.pos = new Map();
  }

  /** Adds `v` unless present; whether it was added. */
  add(v: T): boolean {
    if (this.pos.has(v)) return false;
    this.pos.set(v, this.vals.push(v) - 1);
    return true;
  }

  /** Removes `v` (the last value takes its place); whether it was there. */
  remove(v: T): boolean {
    const i = this.pos.get(v);
    if (i === undefined) return false;
    this.pos.delete(v);
    const vals = this.vals;
    const last = vals.pop() as T;
    if (i < vals.length) {
      vals[i] = last;
      this.pos.set(last, i);
    }
    return true;
  }
}

/** No value, one value, or a Many. */
type Slot<T> = T | Many<T> | undefined;

/** Set by slotAdd/slotRemove: whether the last call changed the set. */
let changed = false;

function slotAdd<T>(slot: Slot<T>, v: T): Slot<T> {
  changed = true;
  if (slot === undefined) return v;
  if (slot instanceof Many) {
    changed = slot.add(v);
    return slot;
  }
  if (slot === v) {
    changed = false;
    return slot;
  }
  const m = new Many<T>();
  m.add(slot);
  m.add(v);
  return m;
}

function slotRemove<T>(slot: Slot<T>, v: T): Slot<T> {
  changed = false;
  if (slot === undefined) return slot;
  if (slot instanceof Many) {
    if (!slot.remove(v)) return slot;
    changed = true;
    return slot.vals.length === 1 ? slot.vals[0] : slot;
  }
  if (slot !== v) return slot;
  changed = true;
  return undefined;
}

/**
 * `many` says whether `slot` is a Many, from a flag held beside the slot: asking the slot itself
 * (`instanceof`) reads the value's header, a cache miss per hit that the visitor may not need.
 */
function visitSlot<T>(slot: T | Many<T>, many: boolean, visit: (value: T) => void): void {
  if (many) {
    const a = (slot as Many<T>).vals;
    for (let i = 0; i < a.length; i++) visit(a[i]);
  } else {
    visit(slot as T);
  }
}

/** Stands in the exact table for a filter with two or more values (kept in `exactSets`). */
const SET = {};

/** FilterTrie.end: where the values of the filter just walked go. */
export const END_VALS = 0;
const END_HASH = 1;
const END_PLUS = 2;

/** Slots in a FilterTrie's cache of level texts. */
const KEY_CACHE = 256;
/** Longest level text the cache holds (V8 copies slices up to 12 characters). */
const KEY_CACHE_MAX_LEN = 12;

/** A trie node; TopicStore's trie uses it too (one node shape: the lookups stay monomorphic). */
export class Node<T> implements LevelNode<Node<T>> {
  declare key: string;
  declare hash: number;
  declare next: Node<T> | null;
  declare kids: Node<T> | KidTable<Node<T>> | null;
  declare nkids: number;
  /** The `+` child. */
  declare plus: Node<T> | null;
  /** Values whose filter ends at this node. */
  declare vals: Slot<T>;
  /** Values whose filter is this node's path followed by `/#` (or `#` alone, at the root). */
  declare hvals: Slot<T>;
  /**
   * Values whose filter is this node's path followed by `/+` and nothing more (or `+` alone, at
   * the root): kept here rather than on a `+` child of their own, so a match reaches them
   * without one more node (at a million subscriptions, one more cache miss), and per-device
   * `dev/{id}/+` filters cost no extra node each.
   */
  declare pvals: Slot<T>;
  /** 1: vals is a Many; 2: hvals is a Many; 4: pvals is a Many (see visitSlot). */
  declare sets: number;
  /** The path hash of this node's levels from the root (see PathBloom); 0 at the root. */
  declare phash: number;
  constructor(key: string, hash: number) {
    this.key = key;
    this.hash = hash;
    this.next = this.kids = this.plus = null;
    this.nkids = this.sets = this.phash = 0;
    this.vals = this.hvals = this.pvals = undefined;
  }
}

interface Group<V> {
  group: string;
  members: Many<V>;
}

/**
 * A trie from filters to sets of T. Add and remove walk the filter by index; only new nodes
 * take a slice of it for their key.
 */
export class FilterTrie<T> {
  declare readonly root: Node<T>;
  declare nodes: number;
  declare private path: Node<T>[];
  /** Called with the path hash of each new node reached by level text (not `+` nodes). */
  declare onNew: ((phash: number) => void) | null;
  /**
   * Level texts of recent new nodes, by level hash: a new node takes its key from here when
   * the same text is cached, so a level that recurs under many parents (`temp`, `status`)
   * is one string whose line stays in cache when lookups compare it, not one copy per node.
   */
  declare private keys: Array<string | null> | null;
  constructor() {
    this.root = new Node<T>('', levelHash('', 0, 0));
    this.nodes = 1;
    this.path = [];
    this.end = END_VALS;
    this.onNew = null;
    this.keys = null;
  }

  /**
   * The text of filter[s, e) with hash `h`, the cached string when it holds the same. Only
   * short levels are cached: they are the ones that recur (`temp`, `state`), and an engine may
   * keep a longer slice as a view into the whole filter, which the cache would then keep alive
   * after its node is gone.
   */
  private key(filter: string, s: number, e: number, h: number): string {
    if (e - s > KEY_CACHE_MAX_LEN) return filter.slice(s, e);
    let keys = this.keys;
    if (keys === null) this.keys = keys = new Array<string | null>(KEY_CACHE).fill(null);
    const i = h & (KEY_CACHE - 1);
    const k = keys[i];
    if (k !== null && keyIs(k, filter, s, e)) return k;
    const fresh = filter.slice(s, e);
    keys[i] = fresh;
    return fresh;
  }

  /**
   * Set by at(): which of the node's slots the filter's values go in: END_VALS, END_HASH (the
   * filter ended in `#`: hvals) or END_PLUS (it ended in `+`: pvals).
   */
  declare end: number;

  /**
   * The node for `filter` (from index `start`), created on demand when `make`, else null when
   * the filter has none; leaves the path to it in this.path (root first) for prune().
   */
  at(filter: string, start: number, make: boolean): Node<T> | null {
    const path = this.path;
    path.length = 0;
    let node = this.root;
    const n = filter.length;
    let s = start;
    for (;;) {
      path.push(node);
      let e = filter.indexOf('/', s);
      if (e < 0) e = n;
      const one = e === s + 1;
      if (one && e === n) {
        const c = filter.charCodeAt(s);
        if (c === HASH || c === PLUS) {
          this.end = c === HASH ? END_HASH : END_PLUS;
          return node;
        }
      }
      const plus = one && filter.charCodeAt(s) === PLUS;
      const h = levelHash(filter, s, e);
      let kid = plus ? node.plus : findKid(node, filter, s, e, h);
      if (kid === null) {
        if (!make) return null;
        kid = new Node<T>(plus ? '+' : this.key(filter, s, e, h), h);
        kid.phash = hashStep(node.phash, kid.hash);
        this.nodes++;
        if (plus) node.plus = kid;
        else {
          addKid(node, kid);
          if (this.onNew !== null) this.onNew(kid.phash);
        }
      }
      node = kid;
      if (e === n) {
        path.push(node);
        this.end = END_VALS;
        return node;
      }
      s = e + 1;
    }
  }

  /** Frees the nodes of this.path (from the deepest) that hold nothing any more. */
  prune(): void {
    const path = this.path;
    for (let i = path.length - 1; i > 0; i--) {
      const node = path[i];
      if (
        node.vals !== undefined ||
        node.hvals !== undefined ||
        node.pvals !== undefined ||
        node.plus !== null ||
        node.nkids !== 0
      )
        break;
      const parent = path[i - 1];
      if (parent.plus === node) parent.plus = null;
      else removeKid(parent, node);
      this.nodes--;
    }
    path.length = 0;
  }
}

/** Reusable per-walk state: level ends and hashes of the topic, and the DFS stack. */
class Walk {
  // Plain arrays: they grow on their own, and hold small integers unboxed.
  declare ends: number[];
  declare hashes: number[];
  declare levels: number;
  /** A hash of the whole topic, from its level hashes: the exact-filter bloom's index. */
  declare full: number;
  declare stackNodes: unknown[];
  declare stackLevels: number[];
  constructor() {
    this.ends = [];
    this.hashes = [];
    this.levels = this.full = 0;
    this.stackNodes = [];
    this.stackLevels = [];
  }

  /** Splits `topic` into level ends and hashes in one pass over its characters. */
  load(topic: string): void {
    const n = topic.length;
    const ends = this.ends;
    const hashes = this.hashes;
    let l = 0;
    let h = HASH_INIT;
    let f = 0;
    for (let i = 0; i <= n; i++) {
      const c = i < n ? topic.charCodeAt(i) : SLASH;
      if (c === SLASH) {
        const lh = hashEnd(h);
        ends[l] = i;
        hashes[l] = lh;
        f = hashStep(f, lh);
        l++;
        h = HASH_INIT;
      } else {
        h = hashStep(h, c);
      }
    }
    this.levels = l;
    this.full = f;
  }
}

/**
 * Depth-first over the nodes that match the loaded topic, with an explicit stack: a filter
 * may have 32,768 levels, more than the call stack would take. `bloom`, when given, holds the
 * path hash of every node: a node with a table of children asks it before the table.
 */
function walkTrie<T>(
  root: Node<T>,
  walk: Walk,
  topic: string,
  visit: (value: T) => void,
  bloom: PathBloom | null,
): void {
  const ends = walk.ends;
  const hashes = walk.hashes;
  const levels = walk.levels;
  const dollar = topic.charCodeAt(0) === DOLLAR;
  // Pending `+` branches; the literal branch is followed in place, without a push.
  const nodes = walk.stackNodes as Array<Node<T> | null>;
  const depths = walk.stackLevels;
  let sp = 0;
  let high = 0;
  let node = root;
  let li = 0;
  for (;;) {
    const hv = node.hvals;
    if (hv !== undefined && !(li === 0 && dollar)) visitSlot(hv, (node.sets & 2) !== 0, visit);
    let next: Node<T> | null = null;
    if (li === levels) {
      const v = node.vals;
      if (v !== undefined) visitSlot(v, (node.sets & 1) !== 0, visit);
    } else {
      const pv = node.pvals;
      if (pv !== undefined && li === levels - 1 && !(li === 0 && dollar))
        visitSlot(pv, (node.sets & 4) !== 0, visit);
      const nk = node.nkids;
      if (nk !== 0) {
        const lh = hashes[li];
        if (nk <= LIST_MAX || bloom === null || bloom.has(hashStep(node.phash, lh)))
          next = findKid(node, topic, li === 0 ? 0 : ends[li - 1] + 1, ends[li], lh);
      }
      const plus = node.plus;
      if (plus !== null && !(li === 0 && dollar)) {
        if (next === null) next = plus;
        else {
          nodes[sp] = plus;
          depths[sp] = li + 1;
          sp++;
          if (sp > high) high = sp;
        }
      }
    }
    if (next !== null) {
      node = next;
      li++;
    } else if (sp > 0) {
      sp--;
      node = nodes[sp] as Node<T>;
      li = depths[sp];
    } else {
      break;
    }
  }
  // Drop the references so removed nodes (and their values) can be collected.
  for (let i = 0; i < high; i++) nodes[i] = null;
}

/**
 * Subscriptions by topic filter. `V` is opaque: a broker keeps its own subscription record
 * there (client, QoS, no local, retain as published, retain handling, subscription
 * identifier); it may be anything but undefined. A value is held at most once per filter
 * (adding it again is a no-op); the same value on two filters is two subscriptions.
 *
 * match() visits each normal value once per matching subscription: a value added on two
 * overlapping filters (`a/+` and `a/#`) is visited twice, and the broker dedupes per client
 * (MQTT 5 section 3.3.4 lets it deliver once with the highest QoS, or once per subscription).
 * Shared subscriptions `$share/{group}/{filter}` are delivered once per matching group with
 * every member whose filter matches, so the broker picks one member per group per message.
 *
 * Filters without wildcards sit in a hash table keyed by the whole filter (one probe per
 * topic); the others in a trie walked level by level. Do not add or remove while match() is
 * visiting (it throws): collect and apply afterwards. Visit order is unspecified.
 */
export class SubscriptionIndex<V> {
  /** Filters without wildcards: one lookup of the whole topic's hash finds them. */
  declare private readonly exact: ExactTable<V | typeof SET>;
  /** The values of exact filters holding two or more (their entry in `exact` is SET). */
  declare private readonly exactSets: Map<string, Many<V>>;
  /**
   * The path hashes of the exact filters (Walk.full) and of the trie's nodes (Node.phash): a
   * topic whose bit is clear skips the exact table, and a trie node with a table of children
   * skips it for a level whose bit is clear.
   */
  declare private readonly bloom: PathBloom;
  /** Filters with `+` or `#`. */
  declare private readonly trie: FilterTrie<V>;
  declare private readonly shared: FilterTrie<Group<V>>;
  declare private count: number;
  declare private trieCount: number;
  declare private sharedCount: number;
  declare private readonly walk: Walk;
  declare private walking: number;
  declare private readonly sharedHits: Array<Group<V> | null>;
  declare private readonly pushHit: (g: Group<V>) => void;

  constructor() {
    this.exact = new ExactTable();
    this.exactSets = new Map();
    this.bloom = new PathBloom();
    this.trie = new FilterTrie<V>();
    this.trie.onNew = (h) => this.markPath(h);
    this.shared = new FilterTrie<Group<V>>();
    this.count = this.trieCount = this.sharedCount = this.walking = 0;
    this.walk = new Walk();
    const hits: Array<Group<V> | null> = [];
    this.sharedHits = hits;
    this.pushHit = (g) => {
      hits.push(g);
    };
  }

  /** Number of (filter, value) pairs held, shared ones included. */
  get size(): number {
    return this.count;
  }

  isEmpty(): boolean {
    return this.count === 0;
  }

  /**
   * Trie nodes (both roots included) plus exact-filter entries in use: 2 when empty, so a
   * test can tell that removing everything left nothing behind. Also a memory metric.
   */
  get nodeCount(): number {
    return this.trie.nodes + this.shared.nodes + this.exact.size;
  }

  /**
   * Subscribes `value` to `filter` (validated by the caller: see validateTopicFilter). A
   * `$share/{group}/{filter}` filter joins `value` to that group.
   */
  add(filter: string, value: V): void {
    this.assertNotWalking();
    if (value === undefined) throw new TypeError('undefined value');
    if (filter.startsWith(SHARED_PREFIX)) {
      const sf = splitShared(filter);
      if (sf === null) throw new RangeError(`bad filter ${filter}`);
      this.addShared(sf.group, filter, SHARED_PREFIX.length + sf.group.length + 1, value);
      return;
    }
    if (!hasWildcard(filter)) {
      const h = this.hashOf(filter);
      const slot = this.exact.get(filter, h);
      const next = slotAdd(slot === SET ? this.exactSets.get(filter) : (slot as V | undefined), value);
      if (!changed) return;
      if (slot === undefined) {
        this.exact.set(filter, h, value);
        this.markPath(h);
      } else if (slot !== SET) {
        this.exactSets.set(filter, next as Many<V>);
        this.exact.set(filter, h, SET);
      }
      this.count++;
      return;
    }
    const trie = this.trie;
    const node = trie.at(filter, 0, true) as Node<V>;
    setSlot(node, trie.end, slotAdd(slotAt(node, trie.end), value));
    if (changed) {
      this.count++;
      this.trieCount++;
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
    if (!hasWildcard(filter)) {
      const h = this.hashOf(filter);
      const slot = this.exact.get(filter, h);
      const set = slot === SET ? this.exactSets.get(filter) : undefined;
      const next = slotRemove(set ?? (slot as V | undefined), value);
      if (!changed) return false;
      if (next === undefined) this.exact.delete(filter, h);
      else if (set !== undefined && !(next instanceof Many)) {
        this.exactSets.delete(filter);
        this.exact.set(filter, h, next);
      }
      this.count--;
      return true;
    }
    const trie = this.trie;
    const node = trie.at(filter, 0, false);
    if (node === null) return false;
    const next = slotRemove(slotAt(node, trie.end), value);
    if (!changed) return false;
    setSlot(node, trie.end, next);
    if (next === undefined) trie.prune();
    this.count--;
    this.trieCount--;
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
      if (this.bloom.has(walk.full)) {
        const slot = this.exact.get(topic, walk.full);
        if (slot === SET) visitSlot(this.exactSets.get(topic) as Many<V>, true, visit);
        else if (slot !== undefined) visit(slot as V);
      }
      const shared = this.sharedCount > 0 && visitShared !== undefined;
      if (this.trieCount > 0) walkTrie(this.trie.root, walk, topic, visit, this.bloom);
      if (shared) {
        const nested = this.walking > 1;
        const hits = nested ? [] : this.sharedHits;
        walkTrie(this.shared.root, walk, topic, nested ? (g) => hits.push(g) : this.pushHit, null);
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

  /** The hash of a filter without wildcards, the one match() computes for a topic. */
  private hashOf(filter: string): number {
    this.walk.load(filter);
    return this.walk.full;
  }

  /**
   * Marks the path hash of a new exact filter or trie node (already in place), or rebuilds
   * the bits from every live one when they are due.
   */
  private markPath(h: number): void {
    const bloom = this.bloom;
    if (!bloom.due()) {
      bloom.mark(h);
      return;
    }
    bloom.reset(this.exact.size + this.trie.nodes);
    this.exact.hashes((k) => bloom.mark(k));
    const stack: Node<V>[] = [this.trie.root];
    const kids: Node<V>[] = [];
    for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
      pushKids(node, kids);
      for (const k of kids) {
        bloom.mark(k.phash);
        stack.push(k);
      }
      kids.length = 0;
      if (node.plus !== null) stack.push(node.plus);
    }
  }

  private addShared(group: string, filter: string, start: number, value: V): void {
    const trie = this.shared;
    const node = trie.at(filter, start, true) as Node<Group<V>>;
    const end = trie.end;
    const groups = slotAt(node, end);
    let entry = findGroup(groups, group);
    if (entry === undefined) {
      entry = { group, members: new Many<V>() };
      setSlot(node, end, slotAdd(groups, entry));
    }
    if (entry.members.add(value)) {
      this.count++;
      this.sharedCount++;
    }
  }

  private removeShared(group: string, filter: string, start: number, value: V): boolean {
    const trie = this.shared;
    const node = trie.at(filter, start, false);
    if (node === null) return false;
    const end = trie.end;
    const groups = slotAt(node, end);
    const entry = findGroup(groups, group);
    if (entry === undefined || !entry.members.remove(value)) return false;
    this.count--;
    this.sharedCount--;
    if (entry.members.vals.length === 0) {
      const next = slotRemove(groups, entry);
      setSlot(node, end, next);
      if (next === undefined) trie.prune();
    }
    return true;
  }

  private assertNotWalking(): void {
    if (this.walking > 0) {
      throw new Error('changed during match()');
    }
  }
}

/** The node's slot for values of a filter that ended as FilterTrie.end says. */
function slotAt<T>(node: Node<T>, end: number): Slot<T> {
  return end === END_VALS ? node.vals : end === END_HASH ? node.hvals : node.pvals;
}

/** Sets that slot and keeps node.sets in step (reading the slots is fine here: not a match). */
function setSlot<T>(node: Node<T>, end: number, slot: Slot<T>): void {
  if (end === END_VALS) node.vals = slot;
  else if (end === END_HASH) node.hvals = slot;
  else node.pvals = slot;
  node.sets =
    (node.vals instanceof Many ? 1 : 0) |
    (node.hvals instanceof Many ? 2 : 0) |
    (node.pvals instanceof Many ? 4 : 0);
}

function findGroup<V>(groups: Slot<Group<V>>, group: string): Group<V> | undefined {
  if (groups === undefined) return undefined;
  if (groups instanceof Many) {
    const a = groups.vals;
    for (let i = 0; i < a.length; i++) if (a[i].group === group) return a[i];
    return undefined;
  }
  return groups.group === group ? groups : undefined;
}

/**
 * Delivers each group once, with one member list without duplicates: the index's own array
 * when one filter matched, else a merged one (only a topic matching two or more shared
 * filters allocates).
 */
function emitGroups<V>(
  hits: Array<Group<V> | null>,
  visitShared: (group: string, members: readonly V[]) => void,
): void {
  if (hits.length === 1) {
    const g = hits[0] as Group<V>;
    visitShared(g.group, g.members.vals);
    return;
  }
  // A Set per group keeps the merge linear, however big the groups.
  const byGroup = new Map<string, Set<V>>();
  for (const h of hits) {
    const g = h as Group<V>;
    let set = byGroup.get(g.group);
    if (set === undefined) byGroup.set(g.group, (set = new Set()));
    for (const m of g.members.vals) set.add(m);
  }
  for (const [group, set] of byGroup) visitShared(group, [...set]);
}
