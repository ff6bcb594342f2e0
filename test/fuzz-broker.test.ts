/**
 * Issue 12, the permanent suite: a bounded fuzz run against a live broker-lite process (CLI,
 * password file, ACL file, persistence, TCP and WebSocket listeners on 127.0.0.1 port 0).
 * Fixed seed first (FUZZ_SEED overrides it), then a random seed printed for replay; both
 * bounded in cases and time so the whole file stays under 60 s on a slow 2-core machine.
 * Longer runs and replays: `npm run fuzz -- --seconds N`, `--seed S --path P` (test/README.md).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeResult, Fuzzer, type RunResult } from './fuzz/fuzz.ts';

const FIXED_SEED = 20_261_207;
const fromEnv = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
if (fromEnv !== undefined && !Number.isSafeInteger(fromEnv)) throw new Error('FUZZ_SEED takes an integer');

/**
 * Budgets (ms): the fast-check runs together take FIXED + RANDOM; a case cut off by the limit
 * may run a few more seconds, then the final kill -9 check and SIGTERM. Broker start-up under
 * tsx is 1-3 s. Total stays under the 60 s the issue allows.
 */
const FIXED_MS = fromEnv === undefined ? 18_000 : 30_000;
const RANDOM_MS = fromEnv === undefined ? 12_000 : 0;
const MAX_CASES = 300;

describe('issue 12 fuzz: broker-lite under hostile clients (bounded run)', () => {
  let fuzzer: Fuzzer | undefined;
  const log = (line: string) => process.stdout.write(`[fuzz] ${line}\n`);

  beforeAll(async () => {
    fuzzer = await Fuzzer.start({ log });
  }, 30_000);

  afterAll(async () => {
    await fuzzer?.dispose();
  }, 30_000);

  it('keeps the broker alive, bounded in memory, serving QoS 1 and durable across kill -9', async () => {
    const f = fuzzer as Fuzzer;
    const results: RunResult[] = [];
    const seeds: Array<[number, number]> = [[fromEnv ?? FIXED_SEED, FIXED_MS]];
    if (RANDOM_MS > 0) seeds.push([(Math.random() * 2 ** 31) | 0, RANDOM_MS]);
    for (const [seed, timeMs] of seeds) {
      log(`seed ${seed} (replay: FUZZ_SEED=${seed} npx vitest run test/fuzz-broker.test.ts)`);
      const r = await f.run({ seed, timeMs, numRuns: MAX_CASES });
      log(describeResult(r));
      results.push(r);
      if (r.failed) break;
    }
    const problems = await f.finish();
    fuzzer = undefined;
    for (const p of problems) log(`FAILED ${p}`);
    log(f.summary());
    const failures = results.filter((r) => r.failed).map(describeResult);
    expect([...failures, ...problems]).toEqual([]);
    // The run did something: cases ran and clients got past authentication.
    expect(f.stats.cases).toBeGreaterThan(10);
    expect(f.stats.received.get('connack:0') ?? 0).toBeGreaterThan(0);
  }, 60_000);
});
