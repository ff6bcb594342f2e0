/**
 * The level table that the two tries (SubscriptionIndex, TopicStore) use for their children,
 * and the level hash they key it by. Not part of the codec's 12,000-byte budget nor of its ES5
 * build (topic-match.ts is: it holds what a client bundles).
 */

// ---------------------------------------------------------------------------------------------
// Level table: a trie node's children keyed by level text. Up to LIST_MAX children sit in a
// singly linked list through `next` (most nodes have one or two children, and a list costs no
// extra object). More go into an open-addressing table (linear probing, load at most 1/2)
// stored as one array of [hash, node, key] triples: a probe reads the hash beside the pointer,
// so a slot holding another level costs no visit to that node, and a hit has the node and its
// key string on the slot's line, so the two are fetched together rather than one after the
// other (at a million subscriptions each is a cache miss). A lookup takes the level as
// (string, start, end) and compares char codes, so no level is sliced.
// ---------------------------------------------------------------------------------------------

/** A table: [hash0, node0, key0, hash1, ...]; an empty slot has a null node. */
export type KidTable<N> = Array<N | number | string | null>;

/** The fields a trie node needs to live in a level table. */
export interface LevelNode<N extends LevelNode<N>> {
  /** This node's level text. */
  key: string;
  /** levelHash of key: a lookup compares it before touching the key's characters. */
  hash: number;
  /** Next sibling in the parent's list (unused while the parent has a table). */
  next: N | null;
  /** The list head, or the table once there were more than LIST_MAX children. */
  kids: N | KidTable<N> | null;
  nkids: number;
}

/** Most children a node keeps in a list; more go into a table. */
export const LIST_MAX = 8;
/** Back to a list only well below LIST_MAX, so a node hovering at the limit does not thrash. */
const LIST_BACK = 4;
/** Slots in the smallest table. */
const TABLE_MIN = 32;

/**
 * Level hashes are FNV-1a, folded to 30 bits so they stay small integers on every engine. The
 * offset basis is drawn once per process, so collisions cannot be precomputed offline and sent
 * as filters to slow a table down (keys are always compared in full: collisions cost time only).
 */
export const HASH_INIT = (0x811c9dc5 ^ Math.floor(Math.random() * 0x7fffffff)) | 0;

export function hashStep(h: number, c: number): number {
  return Math.imul(h ^ c, 0x01000193);
}

export function hashEnd(h: number): number {
  return (h ^ (h >>> 15)) & 0x3fffffff;
}

/** The hash of the level s[start, end). */
export function levelHash(s: string, start: number, end: number): number {
  let h = HASH_INIT;
  for (let i = start; i < end; i++) h = hashStep(h, s.charCodeAt(i));
  return hashEnd(h);
}

/** Whether `key` equals s[start, end). */
export function keyIs(key: string, s: string, start: number, end: number): boolean {
  const n = end - start;
  if (key.length !== n) return false;
  for (let i = 0; i < n; i++) if (key.charCodeAt(i) !== s.charCodeAt(start + i)) return false;
  return true;
}

/** The home slot of level hash `h` in `kids` (slot i is at 3i). */
function home<N>(kids: KidTable<N>, h: number): number {
  return h & (kids.length / 3 - 1);
}

/**
 * The child of `parent` whose key is s[start, end), or null. `hash` is levelHash of the same
 * range, or -1 to have it computed here.
 */
export function findKid<N extends LevelNode<N>>(
  parent: N,
  s: string,
  start: number,
  end: number,
  hash: number,
): N | null {
  const kids = parent.kids;
  if (kids === null) return null;
  const h = hash < 0 ? levelHash(s, start, end) : hash;
  if (Array.isArray(kids)) {
    const mask = kids.length / 3 - 1;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const k = kids[3 * i + 1] as N | null;
      if (k === null) return null;
      if (kids[3 * i] === h && keyIs(kids[3 * i + 2] as string, s, start, end)) return k;
    }
  }
  for (let k: N | null = kids; k !== null; k = k.next) {
    if (k.hash === h && keyIs(k.key, s, start, end)) return k;
  }
  return null;
}

/** Adds `kid` (its key set, not already present) under `parent`. */
export function addKid<N extends LevelNode<N>>(parent: N, kid: N): void {
  const n = parent.nkids + 1;
  parent.nkids = n;
  let kids = parent.kids;
  if (!Array.isArray(kids)) {
    if (n <= LIST_MAX) {
      kid.next = kids;
      parent.kids = kid;
      return;
    }
    kids = buildTable(parent, TABLE_MIN);
    parent.kids = kids;
  } else if (n * 2 > kids.length / 3) {
    kids = buildTable(parent, (kids.length / 3) * 2);
    parent.kids = kids;
  }
  kid.next = null;
  place(kids, kid);
}

/** Unlinks `kid` from `parent`; returns false when it was not a child. */
export function removeKid<N extends LevelNode<N>>(parent: N, kid: N): boolean {
  const kids = parent.kids;
  if (kids === null) return false;
  if (Array.isArray(kids)) {
    const mask = kids.length / 3 - 1;
    let i = home(kids, kid.hash);
    for (;;) {
      const k = kids[3 * i + 1];
      if (k === null) return false;
      if (k === kid) break;
      i = (i + 1) & mask;
    }
    // Backward-shift deletion: pull later entries of the run into the hole, no tombstones.
    for (let j = (i + 1) & mask; kids[3 * j + 1] !== null; j = (j + 1) & mask) {
      const hj = kids[3 * j] as number;
      if (((j - (hj & mask)) & mask) >= ((j - i) & mask)) {
        kids[3 * i] = hj;
        kids[3 * i + 1] = kids[3 * j + 1];
        kids[3 * i + 2] = kids[3 * j + 2];
        i = j;
      }
    }
    kids[3 * i] = -1;
    kids[3 * i + 1] = kids[3 * i + 2] = null;
  } else {
    const head = unlink(kids, kid);
    if (head === undefined) return false;
    parent.kids = head;
  }
  kid.next = null;
  const n = parent.nkids - 1;
  parent.nkids = n;
  if (Array.isArray(kids)) {
    if (n <= LIST_BACK) {
      const all: N[] = [];
      pushKids(parent, all);
      let head: N | null = null;
      for (const k of all) {
        k.next = head;
        head = k;
      }
      parent.kids = head;
    } else if (kids.length / 3 > TABLE_MIN && n * 8 <= kids.length / 3) {
      parent.kids = buildTable(parent, kids.length / 6);
    }
  }
  return true;
}

/** Pushes every child of `parent` onto `out` (for iterative walks without a closure). */
export function pushKids<N extends LevelNode<N>>(parent: N, out: N[]): void {
  const kids = parent.kids;
  if (Array.isArray(kids)) {
    for (let i = 1; i < kids.length; i += 3) {
      const k = kids[i] as N | null;
      if (k !== null) out.push(k);
    }
  } else {
    for (let k = kids; k !== null; k = k.next) out.push(k);
  }
}

/** Removes `kid` from the chain starting at `head`; the new head, or undefined if absent. */
function unlink<N extends LevelNode<N>>(head: N, kid: N): N | null | undefined {
  if (head === kid) return kid.next;
  for (let k = head; k.next !== null; k = k.next) {
    if (k.next === kid) {
      k.next = kid.next;
      return head;
    }
  }
  return undefined;
}

function place<N extends LevelNode<N>>(kids: KidTable<N>, kid: N): void {
  const mask = kids.length / 3 - 1;
  let i = home(kids, kid.hash);
  while (kids[3 * i + 1] !== null) i = (i + 1) & mask;
  kids[3 * i] = kid.hash;
  kids[3 * i + 1] = kid;
  kids[3 * i + 2] = kid.key;
}

/** A table of `slots` slots (a power of two) holding the children of `parent`. */
function buildTable<N extends LevelNode<N>>(parent: N, slots: number): KidTable<N> {
  const nodes: N[] = [];
  pushKids(parent, nodes);
  const kids: KidTable<N> = new Array(3 * slots).fill(null);
  for (let i = 0; i < kids.length; i += 3) kids[i] = -1;
  for (const k of nodes) {
    k.next = null;
    place(kids, k);
  }
  return kids;
}
