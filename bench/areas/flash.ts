/**
 * Issue 18.4: flash wear. The demo's chain (test/helpers/pi-chain.ts) at 1, 10 and 100 readings/s,
 * seven or eight chains side by side at each rate (fresh processes, each its own state directory):
 * - broker-lite with `persistence_commit_window 0` (a commit per event-loop turn, the default
 *   before issue 18.4) + the agent with `queue.fsync: batch` and no commit window
 *   (`commitWindow: 0`: an fsync per device frame);
 * - the knobs at one second: broker-lite with `persistence_commit_window 1000` (acks wait for
 *   the window's one fdatasync) + the agent with `queue.fsync: 1s` (one fsync a second; its puts
 *   resolve after the write, so a power cut may take the last second of acknowledged readings);
 * - Mosquitto with `persistence true` (its defaults: saved every autosave_interval, 1,800 s, and
 *   at exit) + the agent with `batch`, no window;
 * - the agent with `batch` and `commitWindow` 50ms (its default), 250ms and 1s (devices are ACKed
 *   only after the fsync, up to a window later; their retransmissions are counted), under
 *   broker-lite's defaults (its 50 ms window: the broker rows "default window" come from the
 *   chain where both run their defaults); devices without HELD (firmware before issue 18.4);
 * - issue 18.4: devices that understand HELD and the agent's window that meets 2x payload at the
 *   rate (150 s, 30 s, 1 s; devices keeping 64 frames; status.json on a tmpfs, at 1/s also on the
 *   card every 2 s): bytes,
 *   fsyncs, the devices' HELD, resends and ring overwrites, and the reading-to-subscriber latency
 *   (since issue 18.5 a reading is published before its commit: the window delays the ACK only).
 * Over a window after a warm-up (150 s at 1/s, 64 s at 10/s, 20 s at 100/s; the HELD rows from
 * just after a commit to just after the first commit that long later: whole commits): bytes each
 * process caused to be written to storage
 * (/proc/PID/io write_bytes: counted when a page is dirtied, so an append followed by an fsync
 * costs at least the page, as on flash) per reading the devices made, and fsyncs per second (the agent's
 * and broker-lite's own counters from /metrics; Mosquitto's from strace on it). The target
 * compares bytes per reading with twice the reading's payload (the JSON the subscriber gets).
 * Filesystem journal writes (jbd2) are nobody's write_bytes and are not counted. The agent runs
 * with its default health interval (30 s) and status interval (2 s: status.json, rewritten in place).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hasSocat } from '@mqtt-edge/firmware-sim';
import { hasMosquitto } from '../../test/helpers/mosquitto.ts';
import {
  type Chain,
  percentile,
  scrape,
  sleep,
  startChain,
  writeBytes,
} from '../../test/helpers/pi-chain.ts';
import { type BenchArea, type BenchOptions, type BenchRow, costRow } from '../harness.ts';

interface Reading {
  /** Readings the devices made in the window (the denominator: a long window delivers in bursts). */
  readings: number;
  payload: number;
  brokerBytes: number;
  agentBytes: number;
  brokerSyncs: number;
  agentSyncs: number;
  seconds: number;
  /** DATA frames the devices sent again in the window (no ACK within their 1 s timeout). */
  retransmits: number;
  /** DATA overwritten in the devices' full rings in the window: readings lost. */
  overwrites: number;
  /** HELD frames the devices took in the window (issue 18.4). */
  held: number;
  /** Reading (device sample) to subscriber, ms, of readings delivered in the window. */
  latencyP50: number;
  latencyP99: number;
}

/** Counts fsync/fdatasync calls of `pid` (all threads) while attached. */
function countSyncs(pid: number, file: string): { stop(): Promise<number> } {
  const st = spawn('strace', ['-f', '-qq', '-e', 'trace=fsync,fdatasync', '-o', file, '-p', String(pid)], {
    stdio: 'ignore',
  });
  return {
    async stop() {
      st.kill('SIGINT');
      await new Promise((r) => st.once('exit', r));
      try {
        return readFileSync(file, 'utf8')
          .split('\n')
          .filter((l) => /f(data)?sync\(/.test(l)).length;
      } catch {
        return Number.NaN;
      }
    },
  };
}

const agentSyncs = (chain: Chain) => scrape(chain.agentMetrics, 'mqtt_edge_agent_queue_fsyncs_total');

/**
 * Returns once the agent's queue has committed (its fsync count went up), polling every 100 ms,
 * at most `maxMs`: a window of whole commits starts and ends there.
 */
async function nextCommit(chain: Chain, maxMs: number): Promise<void> {
  const before = await agentSyncs(chain);
  const until = Date.now() + maxMs;
  while (Date.now() < until && (await agentSyncs(chain)) === before) await sleep(100);
}

/**
 * `commitMs` (rows whose window is long against the run): measured from just after one of the
 * agent's commits to just after the first commit `windowMs` or more later, so the bytes and the
 * readings are those of whole commits (a run that ends mid-window counts readings whose records
 * are not written yet).
 */
async function measure(
  chain: Chain,
  mosquitto: boolean,
  windowMs: number,
  dir: string,
  commitMs = 0,
): Promise<Reading> {
  const b = chain.broker.pid as number;
  const a = chain.agent.pid as number;
  if (commitMs > 0) await nextCommit(chain, commitMs + 5000);
  const strace = mosquitto ? countSyncs(b, path.join(dir, 'strace.out')) : null;
  const w0 = { broker: writeBytes(b), agent: writeBytes(a) };
  const s0 = {
    broker: mosquitto ? 0 : await scrape(chain.brokerMetrics, 'mqtt_edge_broker_persistence_syncs_total'),
    agent: await scrape(chain.agentMetrics, 'mqtt_edge_agent_queue_fsyncs_total'),
  };
  const t0 = Date.now();
  const from = chain.received.length;
  const stat = (k: 'retransmits' | 'ringOverwrites' | 'held' | 'readings') => () =>
    chain.devices.reduce((n, d) => n + d.sim.firmware.stats[k], 0);
  const [retransmits, overwrites, held, made] = [
    stat('retransmits'),
    stat('ringOverwrites'),
    stat('held'),
    stat('readings'),
  ];
  const r0 = retransmits();
  const o0 = overwrites();
  const h0 = held();
  const m0 = made();
  await sleep(windowMs);
  if (commitMs > 0) await nextCommit(chain, commitMs + 5000);
  const t1 = Date.now();
  const w1 = { broker: writeBytes(b), agent: writeBytes(a) };
  const s1 = {
    broker: mosquitto
      ? ((await strace?.stop()) ?? Number.NaN)
      : await scrape(chain.brokerMetrics, 'mqtt_edge_broker_persistence_syncs_total'),
    agent: await scrape(chain.agentMetrics, 'mqtt_edge_agent_queue_fsyncs_total'),
  };
  const got = chain.received.slice(from).filter((r) => r.at <= t1);
  const latencies = got.map((r) => r.latency);
  return {
    readings: made() - m0,
    payload: got.reduce((n, r) => n + r.bytes, 0) / Math.max(1, got.length),
    brokerBytes: w1.broker - w0.broker,
    agentBytes: w1.agent - w0.agent,
    brokerSyncs: s1.broker - s0.broker,
    agentSyncs: s1.agent - s0.agent,
    seconds: (t1 - t0) / 1000,
    retransmits: retransmits() - r0,
    overwrites: overwrites() - o0,
    held: held() - h0,
    latencyP50: latencies.length > 0 ? percentile(latencies, 0.5) : Number.NaN,
    latencyP99: latencies.length > 0 ? percentile(latencies, 0.99) : Number.NaN,
  };
}

/**
 * Issue 18.4's HELD rows: the agent's window per rate, long enough for ~150-300 readings (the 3
 * devices' frames of 4) per commit, so that what a commit rewrites besides its records (the tail
 * page, the cursor every 4 windows: 1.4-3.5 pages measured) and the records (~170 bytes a
 * reading, the agent's health messages included) stay under twice the payload (measured with
 * whole commits: 90-120 s at 1/s 244-273 bytes, 16 s at 10/s 256: the edge). The devices
 * understand HELD (so they neither resend nor overwrite) and keep 64 frames (HELLO `h` 64: the
 * agent commits early at 32 held frames a device, 38 s of frames at 10/s).
 */
const HELD_WINDOW_MS: Record<number, number> = { 1: 150_000, 10: 30_000, 100: 1000 };
const heldWindow = (rate: number) => `${HELD_WINDOW_MS[rate] / 1000}s`;
const HELD_RING = 64;
/**
 * status.json in those rows: on a tmpfs, where the systemd unit puts it (`agent.statusDir`, its
 * RuntimeDirectory=). On the card, each rewrite after the kernel wrote the page back dirties it
 * again: at the default 2 s a page every 10-30 s, more than a reading at 1/s; that row is
 * reported too (`held-status-card`).
 */
const STATUS_TMPFS = '/dev/shm';

export default {
  area: 'flash',
  async run(options: BenchOptions): Promise<BenchRow[]> {
    if (!hasSocat()) {
      console.error('flash: skipped: socat missing (the devices need ptys)');
      return [];
    }
    const rows: BenchRow[] = [];
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-flash-'));
    const shm = mkdtempSync(path.join(STATUS_TMPFS, 'bench-flash-'));
    try {
      for (const rate of [1, 10, 100]) {
        // the HELD rows: from a commit to the first commit this long later (one 150 s window at 1/s, two 30 s ones at 10/s)
        const windowMs = options.quick ? 8000 : rate === 1 ? 150_000 : rate === 10 ? 64_000 : 20_000;
        // the agent's group-commit window with `batch` (issue 18.4): 0, 50 ms (the default), 250 ms, 1 s
        const variants = [
          {
            name: 'batch',
            broker: 'broker-lite' as const,
            agentFsync: 'batch',
            agentWindow: '0',
            windowMs: 0,
          },
          {
            name: '1s',
            broker: 'broker-lite' as const,
            agentFsync: '1s',
            agentWindow: undefined,
            windowMs: 1000,
          },
          ...(hasMosquitto()
            ? [
                {
                  name: 'mosquitto',
                  broker: 'mosquitto' as const,
                  agentFsync: 'batch',
                  agentWindow: '0',
                  windowMs: 0,
                },
              ]
            : []),
          // broker-lite's default window (50 ms, issue 18.4) in these three
          ...['50ms', '250ms', '1s'].map((w) => ({
            name: `batch-${w}`,
            broker: 'broker-lite' as const,
            agentFsync: 'batch',
            agentWindow: w,
            windowMs: undefined,
          })),
          // issue 18.4: devices that understand HELD, the window that meets 2x payload
          {
            name: 'held',
            broker: 'broker-lite' as const,
            agentFsync: 'batch',
            agentWindow: heldWindow(rate),
            windowMs: undefined,
            statusOnTmpfs: true,
          },
          ...(rate === 1
            ? [
                {
                  name: 'held-status-card',
                  broker: 'broker-lite' as const,
                  agentFsync: 'batch',
                  agentWindow: heldWindow(rate),
                  windowMs: undefined,
                },
              ]
            : []),
        ];
        const chains = await Promise.all(
          variants.map((v) =>
            startChain({
              dir: path.join(dir, `${rate}-${v.name}`),
              readingsPerSecond: rate,
              broker: v.broker,
              agentFsync: v.agentFsync,
              agentCommitWindow: v.agentWindow,
              brokerCommitWindowMs: v.windowMs,
              healthInterval: null,
              // the rows from before issue 18.4 keep their devices (no HELD): only the HELD rows get it
              understandsHeld: v.name.startsWith('held'),
              ...(v.name.startsWith('held') ? { ringSize: HELD_RING } : {}),
              ...('statusOnTmpfs' in v ? { statusDir: path.join(shm, `${rate}-${v.name}`) } : {}),
            }),
          ),
        );
        let got: Reading[];
        try {
          // past the start: HELLOs, retained status, discovery, the first snapshot
          await sleep(options.quick ? 3000 : 8000);
          got = await Promise.all(
            chains.map((c, i) =>
              measure(
                c,
                variants[i].broker === 'mosquitto',
                windowMs,
                path.join(dir, `${rate}-${variants[i].name}`),
                variants[i].name.startsWith('held') && !options.quick ? HELD_WINDOW_MS[rate] : 0,
              ),
            ),
          );
        } finally {
          await Promise.all(chains.map((c) => c.stop()));
        }
        const [batch, second] = got;
        const mosq = hasMosquitto() ? got[2] : undefined;
        const named = (name: string) => got[variants.findIndex((v) => v.name === name)];
        const windowed = ['50ms', '250ms', '1s'].map((w) => named(`batch-${w}`));
        const per = (bytes: number, r: Reading) => bytes / Math.max(1, r.readings);
        const payload = batch.payload;
        const say = (r: Reading) =>
          `${r.readings} readings in ${r.seconds.toFixed(0)} s, payload ${r.payload.toFixed(0)} bytes`;
        if (process.env.BENCH_VERBOSE) console.error(`  flash ${rate}/s: ${JSON.stringify(got)}`);
        const label = `${rate} reading${rate === 1 ? '' : 's'}/s`;
        const agentRows = (
          what: string,
          r: Reading,
          devices = `${r.retransmits} frames retransmitted by the devices`,
        ) => [
          costRow(
            `flash: agent bytes written per reading, ${what}, ${label}`,
            'bytes',
            per(r.agentBytes, r),
            2 * payload,
            '2x payload',
            1,
            `${say(r)}; ${(r.agentSyncs / r.seconds).toFixed(r.agentSyncs / r.seconds < 0.1 ? 3 : 1)} fsyncs/s; ${devices}`,
          ),
          costRow(
            `flash: agent fsyncs/s, ${what}, ${label}`,
            'fsyncs/s',
            r.agentSyncs / r.seconds,
            null,
            '-',
          ),
        ];
        // --quick measures 8 s, shorter than these windows: no commit, nothing written yet, no figure
        const heldRows = (what: string, r: Reading) => [
          ...agentRows(
            what,
            r.agentSyncs === 0 ? { ...r, agentBytes: Number.NaN } : r,
            `${r.held} HELD, ${r.retransmits} frames resent, ${r.overwrites} ring overwrites by the devices`,
          ),
          costRow(
            `flash: reading to subscriber p50 / p99, ${what}, ${label}`,
            'ms',
            r.latencyP50,
            null,
            '-',
            undefined,
            `p99 ${r.latencyP99.toFixed(0)} ms: published before its commit (issue 18.5), ACKed to the device after it`,
          ),
        ];
        rows.push(
          ...agentRows('fsync batch, commitWindow 0', batch),
          ...agentRows('fsync 1s', second),
          ...windowed.flatMap((r, i) =>
            agentRows(
              `fsync batch, commitWindow ${['50ms', '250ms', '1s'][i]}${i === 0 ? ' (default)' : ''}`,
              r,
            ),
          ),
          ...heldRows(
            `HELD devices (ring ${HELD_RING}), commitWindow ${heldWindow(rate)}, status.json on tmpfs`,
            named('held'),
          ),
          ...(rate === 1
            ? heldRows(
                `HELD devices (ring ${HELD_RING}), commitWindow ${heldWindow(rate)}, status.json on the card every 2 s`,
                named('held-status-card'),
              )
            : []),
        );
        // both defaults (the agent's and broker-lite's 50 ms windows)
        const defaults = windowed[0];
        const brokerBytesRow = (window: string, r: Reading, digits: number) =>
          costRow(
            `flash: broker-lite bytes written per reading, ${window}, ${label}`,
            'bytes',
            per(r.brokerBytes, r),
            2 * payload,
            '2x payload',
            1,
            `persistence true, a persistent QoS 1 subscriber online; ${(r.brokerSyncs / r.seconds).toFixed(digits)} fsyncs/s`,
          );
        rows.push(
          brokerBytesRow('default window (50 ms)', defaults, 2),
          costRow(
            `flash: broker-lite fsyncs/s, default window (50 ms), ${label}`,
            'fsyncs/s',
            defaults.brokerSyncs / defaults.seconds,
            null,
            '-',
          ),
          brokerBytesRow('persistence_commit_window 0', batch, 1),
          costRow(
            `flash: broker-lite bytes written per reading, default window (50 ms), ${label}`,
            'bytes',
            per(defaults.brokerBytes, defaults),
            mosq ? per(mosq.brokerBytes, mosq) : null,
            'mosquitto',
            undefined,
            mosq
              ? `mosquitto ${say(mosq)}, ${mosq.brokerSyncs} fsyncs in the window: it keeps messages in memory until autosave_interval (1,800 s) or exit`
              : 'mosquitto not installed',
          ),
          costRow(
            `flash: broker-lite fsyncs/s, persistence_commit_window 0, ${label}`,
            'fsyncs/s',
            batch.brokerSyncs / batch.seconds,
            mosq ? mosq.brokerSyncs / mosq.seconds : null,
            'mosquitto',
          ),
        );
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
      rmSync(shm, { recursive: true, force: true });
    }
    return rows;
  },
} satisfies BenchArea;
