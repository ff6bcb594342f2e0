/**
 * `npm run bench:latency -- [WHO] [QOS] [ROUNDS]`: the broker area's latency rows alone, for the
 * questions behind them (issue 18.1, bench/RESULTS.md "broker"): each broker in WHO (comma list of
 * `broker-lite`, `mosquitto`, `floor`; `broker-lite:LABEL` is one more broker-lite process, started
 * with the Node flags in LAT_FLAGS_LABEL and the environment in LAT_ENV_LABEL, `NAME=VALUE ...`)
 * gets ROUNDS x 1,000 one-at-a-time publishes at each QoS in QOS (`0,1`), the brokers taking turns.
 * Prints each round's p50 / p99 and broker CPU per message, then pooled percentiles.
 * LAT_CPUS: `same` (default), `apart` or `free`, as BENCH_LATENCY_CPUS in the bench. LAT_LOAD=RATE:
 * the publishes run under RATE msg/s of load (10 publishers), the load generator on the CPUs the
 * probe and the broker left.
 */
import fs from 'node:fs';
import path from 'node:path';
import {
  bundleBrokerLite,
  cpuNs,
  FLOOR_SCRIPT,
  type LatencyCpus,
  LITE_SCRIPT,
  latency,
  loadedLatency,
  percentile,
  pinLatency,
  type RunningBroker,
  startMosquitto,
  startNodeBroker,
} from './areas/broker.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const who = (process.argv[2] ?? 'broker-lite,mosquitto,floor').split(',');
const qoss = (process.argv[3] ?? '0,1').split(',').map(Number) as Array<0 | 1>;
const rounds = Number(process.argv[4] ?? 4);
const how = (process.env.LAT_CPUS ?? 'same') as LatencyCpus;
const load = Number(process.env.LAT_LOAD ?? 0);
const WARMUP = 5000;

/** `NAME=VALUE ...` as an object. */
function envOf(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of (text ?? '').split(/\s+/))
    if (a.includes('=')) out[a.slice(0, a.indexOf('='))] = a.slice(a.indexOf('=') + 1);
  return out;
}

const bundle = await bundleBrokerLite(ROOT);
const brokers: RunningBroker[] = [];
for (const name of who) {
  if (name === 'mosquitto') brokers.push(await startMosquitto());
  else if (name === 'floor') brokers.push(await startNodeBroker(name, FLOOR_SCRIPT));
  else if (name === 'broker-lite' || name.startsWith('broker-lite:')) {
    const label = name.slice('broker-lite:'.length).toUpperCase();
    const flags = (process.env[`LAT_FLAGS_${label}`] ?? '').split(/\s+/).filter((f) => f !== '');
    const env = { ...envOf(process.env[`LAT_ENV_${label}`]), BROKER_LITE_BUNDLE: bundle };
    brokers.push(await startNodeBroker(name, LITE_SCRIPT, label === '' ? [] : flags, env));
  } else throw new Error(`unknown broker ${name}: broker-lite, broker-lite:LABEL, mosquitto or floor`);
}
const loadavg = (): string => fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
/** One round of `n` samples on `b`, pinned as LAT_CPUS says; the samples and CPU per message. */
async function round(b: RunningBroker, q: 0 | 1, n: number, warmup: number): Promise<[number[], number]> {
  const pin = pinLatency(how, [b.pid]);
  try {
    const c0 = cpuNs(b.pid);
    const samples =
      load > 0
        ? (await loadedLatency(b.port, q, load, n, 'restore' in pin ? pin.loadCpus : undefined)).samples
        : await latency(b.port, n, q, warmup);
    return [samples, (cpuNs(b.pid) - c0) / 1000 / (n + warmup)];
  } finally {
    if ('restore' in pin) pin.restore();
  }
}
const pooled = new Map<string, number[]>();
try {
  for (const q of qoss) {
    for (const b of brokers) await round(b, q, 0, WARMUP);
    for (let r = 0; r < rounds; r++)
      for (let k = 0; k < brokers.length; k++) {
        const b = brokers[(k + r) % brokers.length];
        const [s, cpu] = await round(b, q, 1000, 300);
        const key = `${b.name} QoS ${q}`;
        pooled.set(key, [...(pooled.get(key) ?? []), ...s]);
        console.log(
          `${key} round ${r}: p50 ${percentile(s, 0.5).toFixed(4)} p99 ${percentile(s, 0.99).toFixed(4)} ms, broker CPU ${cpu.toFixed(1)} us/msg${load > 0 ? ' (load included)' : ''}, load average ${loadavg()}`,
        );
      }
  }
  for (const [key, s] of pooled)
    console.log(
      `${key} pooled (${s.length}): ${[0.5, 0.9, 0.98, 0.99, 0.999].map((p) => `p${p * 100} ${percentile(s, p).toFixed(4)}`).join(' ')} ms`,
    );
} finally {
  for (const b of brokers) await b.stop();
}
process.exit(0);
