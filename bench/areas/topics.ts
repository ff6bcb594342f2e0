/**
 * topics: our SubscriptionIndex against qlobber configured for MQTT, in the same process on
 * the same filters, values and topics. `Qlobber` is the generic trie; `QlobberSub` is the one
 * Aedes keeps its subscriptions in (values {clientId, topic, qos, ...}, deduplicated per
 * client per filter). Subscriptions: 70% exact `site/{i%100}/dev/{i}/temp`, 20% with `+`,
 * 10% with `#`; topics drawn at random (fixed seed) from the same id space.
 */
import { createRequire } from 'node:module';
import v8 from 'node:v8';
import { SubscriptionIndex } from '../../packages/codec/src/index.ts';
import {
  type BenchArea,
  type BenchRow,
  collectGarbage,
  costRow,
  measureAllocation,
  measureRate,
  rateRow,
} from '../harness.ts';

interface QlobberLike<V> {
  add(topic: string, val: V): unknown;
  remove(topic: string, val?: V): unknown;
  match(topic: string): V[];
}
type QlobberCtor = new (options: Record<string, unknown>) => QlobberLike<unknown>;

const require = createRequire(import.meta.url);
const { Qlobber } = require('qlobber') as { Qlobber: QlobberCtor };
const QlobberSub = require('qlobber/aedes/qlobber-sub') as QlobberCtor;

/** qlobber's own MQTT settings, as its README gives them. */
const QLOBBER_MQTT = { separator: '/', wildcard_one: '+', wildcard_some: '#', match_empty_levels: true };

/** What a broker keeps per subscription (the value the index stores, opaque to it). */
interface SubRecord {
  clientId: string;
  topic: string;
  qos: number;
  rh: number;
  rap: boolean;
  nl: boolean;
}

function filterFor(i: number): string {
  const site = i % 100;
  const kind = i % 10;
  if (kind < 7) return `site/${site}/dev/${i}/temp`;
  if (kind === 7) return `site/+/dev/${i}/temp`;
  if (kind === 8) return `site/${site}/dev/${i}/+`;
  return `site/${site}/dev/${i}/#`;
}

/** A small xorshift, so every run draws the same topics. */
function randomTopics(count: number, n: number, seed: number): string[] {
  let x = seed | 0 || 1;
  const out: string[] = [];
  const leaves = ['temp', 'temp', 'temp', 'hum', 'status/online'];
  for (let k = 0; k < count; k++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const i = (x >>> 0) % n;
    out.push(`site/${i % 100}/dev/${i}/${leaves[(x >>> 8) % leaves.length]}`);
  }
  return out;
}

interface Dataset {
  filters: string[];
  records: SubRecord[];
  topics: string[];
}

function dataset(n: number, topicCount: number): Dataset {
  const filters: string[] = [];
  const records: SubRecord[] = [];
  for (let i = 0; i < n; i++) {
    const f = filterFor(i);
    filters.push(f);
    records.push({ clientId: `client-${i}`, topic: f, qos: i % 3, rh: 0, rap: false, nl: false });
  }
  // Template literals build ropes; every structure would flatten them on first use, and the
  // first one measured would look smaller for it. Hand everyone flat strings.
  const flat = JSON.parse(JSON.stringify([filters, randomTopics(topicCount, n, 0x2545f491)])) as [
    string[],
    string[],
  ];
  for (let i = 0; i < n; i++) records[i].topic = flat[0][i];
  return { filters: flat[0], records, topics: flat[1] };
}

interface Structure {
  data: Dataset;
  name: string;
  build(): void;
  match(topic: string): number;
  removeAll(): void;
  /** Drops every reference so the next structure is measured on a clean heap. */
  drop(): void;
}

function ours(d: Dataset): Structure {
  let index = new SubscriptionIndex<SubRecord>();
  let hits = 0;
  const visit = (): void => {
    hits++;
  };
  return {
    data: d,
    name: 'mqtt-edge',
    build() {
      index = new SubscriptionIndex<SubRecord>();
      for (let i = 0; i < d.filters.length; i++) index.add(d.filters[i], d.records[i]);
    },
    match(topic) {
      hits = 0;
      index.match(topic, visit);
      return hits;
    },
    removeAll() {
      for (let i = 0; i < d.filters.length; i++) index.remove(d.filters[i], d.records[i]);
      if (!index.isEmpty()) throw new Error('index not empty after removing everything');
    },
    drop() {
      index = new SubscriptionIndex<SubRecord>();
    },
  };
}

function qlobber(d: Dataset, sub: boolean): Structure {
  const make = (): QlobberLike<unknown> => (sub ? new QlobberSub(QLOBBER_MQTT) : new Qlobber(QLOBBER_MQTT));
  let q = make();
  return {
    data: d,
    name: sub ? 'QlobberSub' : 'Qlobber',
    build() {
      q = make();
      for (let i = 0; i < d.filters.length; i++) q.add(d.filters[i], d.records[i]);
    },
    match(topic) {
      return q.match(topic).length;
    },
    removeAll() {
      for (let i = 0; i < d.filters.length; i++) q.remove(d.filters[i], d.records[i]);
    },
    drop() {
      q = make();
    },
  };
}

/** V8 heap plus external memory (typed-array backing stores live outside the V8 heap). */
function heapUsed(): number {
  collectGarbage();
  const h = v8.getHeapStatistics();
  return h.used_heap_size + h.external_memory;
}

interface Figures {
  insertMs: number;
  heapPerSub: number;
  removeMs: number;
  /** Median of the rounds. */
  matchRate: number;
  /** Every round's rate, in round order (round r of every structure ran back to back). */
  matchRounds: number[];
  matchAlloc: number;
  hitsPerTopic: number;
}

function matchOp(s: Structure, topics: string[]): { op: () => void; hitsPerTopic: number } {
  let k = 0;
  let hits = 0;
  for (let i = 0; i < topics.length; i++) hits += s.match(topics[i]);
  const hitsPerTopic = hits / topics.length;
  const op = (): void => {
    hits += s.match(topics[k]);
    k = k + 1 === topics.length ? 0 : k + 1;
  };
  return { op, hitsPerTopic };
}

const gc = (globalThis as { gc?: () => void }).gc;

/** Match rounds per structure, interleaved with the peers'. */
const MATCH_ROUNDS = 9;
/**
 * Rounds for the scaling row (1M against 100k, both ours): its figure is a ratio of two medians
 * taken on a shared machine, and more rounds keep a neighbour's burst from moving it.
 */
const SCALING_ROUNDS = 15;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** `min / median / max` of the per-round ratios a[r] / b[r] (rounds taken back to back). */
function spread(a: number[], b: number[]): string {
  const r = a.map((x, i) => x / b[i]);
  const f = (x: number): string => x.toFixed(2);
  return `per-round ratio min ${f(Math.min(...r))} / median ${f(median(r))} / max ${f(Math.max(...r))} over ${r.length} rounds`;
}

/**
 * Every figure for each structure, each taken in interleaved turns (ours, peers, then the
 * reverse order) so load from elsewhere on a shared machine hits all of them alike: insert and
 * heap `reps` times (best time, median heap), remove-all `reps` times (the last one after the
 * match rounds, on the structure they used), and match in MATCH_ROUNDS rounds, reporting the
 * median round (and every round, so that a row can give the spread of per-round ratios).
 */
function measureAll(
  structures: Structure[],
  matchMs: number,
  allocCount: number,
  reps: number,
  matchRounds = MATCH_ROUNDS,
): Figures[] {
  const n = structures.length;
  const insertMs = structures.map(() => Number.POSITIVE_INFINITY);
  const removeMs = structures.map(() => Number.POSITIVE_INFINITY);
  const heaps: number[][] = structures.map(() => []);
  const turn = (round: number, k: number): number => (round % 2 === 0 ? k : n - 1 - k);
  for (let r = 0; r < reps; r++) {
    for (let k = 0; k < n; k++) {
      const i = turn(r, k);
      const s = structures[i];
      s.drop();
      const before = heapUsed();
      const t0 = performance.now();
      s.build();
      insertMs[i] = Math.min(insertMs[i], performance.now() - t0);
      heaps[i].push((heapUsed() - before) / s.data.filters.length);
      if (r === reps - 1) continue;
      gc?.();
      const t1 = performance.now();
      s.removeAll();
      removeMs[i] = Math.min(removeMs[i], performance.now() - t1);
      s.drop();
    }
  }
  const ops = structures.map((s) => matchOp(s, s.data.topics));
  const rounds: number[][] = structures.map(() => []);
  for (let r = 0; r < matchRounds; r++) {
    for (let k = 0; k < n; k++) {
      const i = turn(r + 1, k);
      // A clean heap each time: no collection started by a peer's garbage runs during ours.
      gc?.();
      rounds[i].push(measureRate(ops[i].op, { ms: matchMs / matchRounds, batch: 1000 }));
    }
  }
  const allocs = ops.map((o) => measureAllocation(o.op, allocCount).bytesPerOp);
  for (let k = 0; k < n; k++) {
    const i = turn(reps, k);
    gc?.();
    const t = performance.now();
    structures[i].removeAll();
    removeMs[i] = Math.min(removeMs[i], performance.now() - t);
    structures[i].drop();
  }
  return structures.map((_, i) => {
    const h = heaps[i].sort((x, y) => x - y);
    return {
      insertMs: insertMs[i],
      heapPerSub: h[h.length >> 1],
      removeMs: removeMs[i],
      matchRate: median(rounds[i]),
      matchRounds: rounds[i],
      matchAlloc: allocs[i],
      hitsPerTopic: ops[i].hitsPerTopic,
    };
  });
}

async function run(options: { quick: boolean }): Promise<BenchRow[]> {
  const n = options.quick ? 10_000 : 100_000;
  const big = options.quick ? 100_000 : 1_000_000;
  const matchMs = options.quick ? 300 : 1800;
  const allocCount = options.quick ? 20_000 : 100_000;
  const d = dataset(n, 20_000);
  const label = n === 100_000 ? '100k' : `${n / 1000}k`;

  const reps = 3;
  const [o, q, qs] = measureAll([ours(d), qlobber(d, false), qlobber(d, true)], matchMs, allocCount, reps);
  const rows: BenchRow[] = [];
  const note = `median of ${MATCH_ROUNDS} interleaved rounds; ${spread(o.matchRounds, q.matchRounds)}; hits/topic ours ${o.hitsPerTopic.toFixed(2)}, Qlobber ${q.hitsPerTopic.toFixed(2)}, QlobberSub ${qs.hitsPerTopic.toFixed(2)}`;
  for (const [peer, p] of [
    ['Qlobber', q],
    ['QlobberSub', qs],
  ] as const) {
    const main = peer === 'Qlobber';
    rows.push(
      costRow(`topics:insert ${label} subs`, 'ms', o.insertMs, p.insertMs, peer, main ? 1 : undefined),
    );
    rows.push(
      rateRow(
        `topics:match ${label} subs`,
        'topics/s',
        o.matchRate,
        p.matchRate,
        peer,
        main ? 3 : undefined,
        main ? note : undefined,
      ),
    );
    rows.push(
      costRow(
        `topics:heap ${label} subs`,
        'bytes/sub',
        o.heapPerSub,
        p.heapPerSub,
        peer,
        main ? 2 : undefined,
      ),
    );
    rows.push(costRow(`topics:match alloc ${label} subs`, 'bytes/topic', o.matchAlloc, p.matchAlloc, peer));
    rows.push(
      costRow(`topics:remove all ${label} subs`, 'ms', o.removeMs, p.removeMs, peer, main ? 1 : undefined),
    );
  }

  // Scaling: the same mix at ten times the size, ours and Qlobber side by side. Both walk
  // O(levels) per topic; what grows is the share of lookups that miss the CPU caches and TLB.
  const dBig = dataset(big, 20_000);
  const bigLabel = big === 1_000_000 ? '1M' : `${big / 1000}k`;
  const scaleMs = options.quick ? matchMs / 2 : (matchMs / MATCH_ROUNDS) * SCALING_ROUNDS;
  const scaleRounds = options.quick ? MATCH_ROUNDS : SCALING_ROUNDS;
  // Ours at the smaller size again, in the same rounds and next to ours at the big size (the
  // order alternates, ours stay adjacent), so the scaling ratio compares figures taken under
  // the same load.
  const [oBig, oAgain, qBig] = measureAll(
    [ours(dBig), ours(d), qlobber(dBig, false)],
    scaleMs,
    allocCount / 5,
    1,
    scaleRounds,
  );
  rows.push(
    rateRow(
      `topics:match ${bigLabel} subs`,
      'topics/s',
      oBig.matchRate,
      qBig.matchRate,
      'Qlobber',
      undefined,
      spread(oBig.matchRounds, qBig.matchRounds),
    ),
  );
  rows.push(
    costRow(`topics:heap ${bigLabel} subs`, 'bytes/sub', oBig.heapPerSub, qBig.heapPerSub, 'Qlobber'),
  );
  rows.push(costRow(`topics:insert ${bigLabel} subs`, 'ms', oBig.insertMs, qBig.insertMs, 'Qlobber'));
  rows.push(costRow(`topics:remove all ${bigLabel} subs`, 'ms', oBig.removeMs, qBig.removeMs, 'Qlobber'));
  // The scaling figure is the median of the per-round ratios: each round runs both sizes back
  // to back, so a neighbour's burst that slows a stretch of rounds slows both sides of each
  // ratio, where it would move one median and not the other.
  const paired = oBig.matchRounds.map((x, i) => x / oAgain.matchRounds[i]);
  rows.push({
    ...rateRow(
      `topics:match ${bigLabel} vs ${label} subs`,
      'topics/s',
      oBig.matchRate,
      oAgain.matchRate,
      `mqtt-edge at ${label}`,
      0.5,
      `ratio = median over ${paired.length} rounds of (our rate at ${bigLabel} / our rate at ${label}), the two taken back to back in each round; >= 0.5 is within 2x; ${spread(oBig.matchRounds, oAgain.matchRounds)}; ratio of the two medians ${(oBig.matchRate / oAgain.matchRate).toFixed(3)}. Qlobber ${bigLabel} / ${label} (separate rounds): ${(qBig.matchRate / q.matchRate).toFixed(3)}`,
    ),
    ratio: median(paired),
  });
  return rows;
}

const area: BenchArea = { area: 'topics', run };
export default area;
