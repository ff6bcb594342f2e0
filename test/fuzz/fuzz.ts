/**
 * The fuzzer: fast-check generates cases (recipes.ts), the driver plays them against a live
 * broker-lite process (broker-process.ts, driver.ts), and the invariants (invariants.ts) are
 * checked after every case. Shared by the bounded run in `npm test`
 * (test/fuzz-broker.test.ts) and `npm run fuzz` (test/fuzz/run.ts).
 *
 * The broker lives across cases, so state builds up as it would in the field. After a failure
 * the broker is restarted on empty storage, so that shrinking replays each smaller case against
 * a healthy broker and the counterexample printed is one that fails on its own.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { BrokerProcess, writeBrokerFiles } from './broker-process.ts';
import { DriverStats, openHalfDone, runCase } from './driver.ts';
import { AclOracle, Keeper, probeQos1, RssSampler } from './invariants.ts';
import { type FuzzCase, fuzzCase } from './recipes.ts';

export interface FuzzSettings {
  /** The broker's RSS must stay under this while a case runs and its probe answers. */
  rssLimitBytes: number;
  /** How long the probe and the durability check wait for an answer. */
  probeTimeoutMs: number;
  /** About one case in this many ends with kill -9 and the durability check. */
  crashEvery: number;
}

/**
 * broker-lite under tsx idles at about 100 MB of RSS. A case sends at most a few MB per
 * connection and four connections; queues are bounded in bytes by the test's config. 256 MB
 * leaves room for a bounded multiple of what a case sends, not for a broker that holds what an
 * unauthenticated peer claims or sends without limit.
 */
export const DEFAULT_RSS_LIMIT_BYTES = 256 * 1024 * 1024;

export const DEFAULT_SETTINGS: FuzzSettings = {
  rssLimitBytes: DEFAULT_RSS_LIMIT_BYTES,
  probeTimeoutMs: 5000,
  crashEvery: 20,
};

/** How long SIGTERM may take at the end (Mosquitto-like brokers stop in well under a second). */
const STOP_TIMEOUT_MS = 10_000;

export interface RunOptions {
  seed: number;
  /** Wall-clock budget of this run (fast-check's interruptAfterTimeLimit); shrinking included. */
  timeMs: number;
  /** At most this many generated cases. */
  numRuns: number;
  /** fast-check's replay path (with the seed, replays one counterexample). */
  path?: string;
}

export interface RunResult {
  seed: number;
  casesRun: number;
  interrupted: boolean;
  failed: boolean;
  shrinks: number;
  counterexample?: FuzzCase;
  path?: string;
  error?: string;
  /** The command that replays the counterexample. */
  replay?: string;
}

export class Fuzzer {
  readonly stats = new DriverStats();
  private tainted = false;
  private caseNo = 0;
  private current: Promise<unknown> = Promise.resolve();
  /** Highest RSS seen in any case. */
  peakRss = 0;
  crashChecks = 0;
  restarts = 0;
  private keeper: Keeper;
  private readonly oracle = new AclOracle();

  private constructor(
    private readonly dir: string,
    readonly broker: BrokerProcess,
    readonly settings: FuzzSettings,
  ) {
    this.keeper = this.newKeeper();
  }

  static async start(settings: Partial<FuzzSettings> = {}): Promise<Fuzzer> {
    const s = { ...DEFAULT_SETTINGS, ...settings };
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mqtt-edge-fuzz-'));
    try {
      const broker = new BrokerProcess(await writeBrokerFiles(dir));
      await broker.start();
      const f = new Fuzzer(dir, broker, s);
      await f.keeper.setup();
      return f;
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  private newKeeper(): Keeper {
    return new Keeper(this.broker, this.broker.files.creds.keeper, this.settings.probeTimeoutMs * 2);
  }

  /** Empty storage, a new broker process and a new keeper session. */
  private async reset(): Promise<void> {
    this.restarts++;
    await this.broker.fresh();
    this.oracle.reset();
    this.keeper = this.newKeeper();
    await this.keeper.setup();
    this.tainted = false;
  }

  /** One case and its invariants; throws (and marks the broker for a reset) on a violation. */
  private async runOne(c: FuzzCase): Promise<void> {
    if (this.tainted || !this.broker.alive) await this.reset();
    const n = ++this.caseNo;
    const b = this.broker;
    const ep = { mqttPort: b.mqttPort, wsPort: b.wsPort, creds: b.files.creds };
    const sampler = new RssSampler(b);
    b.takeErrors();
    try {
      const watch = { oracle: this.oracle, violations: [] as string[] };
      if (c.crash) {
        // kill -9 lands while the case's connections are still at work.
        this.crashChecks++;
        await Promise.all([runCase(c, ep, this.stats, watch), this.keeper.check()]);
      } else {
        await runCase(c, ep, this.stats, watch);
        if (!b.alive) throw new Error('the broker process died during the case');
      }
      if (watch.violations.length > 0) throw new Error(watch.violations.slice(0, 10).join('\n'));
      // Memory first: a broker short of it is slow too, and the probe would take the blame.
      this.checkRss(sampler.peak);
      await probeQos1(b, b.files.creds.probe, n, this.settings.probeTimeoutMs);
      if (!b.alive) throw new Error('the broker process died during the probe');
      const errors = b.takeErrors();
      if (errors.length > 0) throw new Error(`the broker logged errors:\n${errors.join('\n')}`);
      this.checkRss(sampler.stop());
    } catch (err) {
      sampler.stop();
      this.tainted = true;
      throw new Error(`case ${n}: ${(err as Error).message}\n${b.diagnostics()}`);
    }
  }

  private checkRss(peak: number): void {
    this.peakRss = Math.max(this.peakRss, peak);
    const mib = (n: number) => (n / 2 ** 20).toFixed(0);
    if (peak > this.settings.rssLimitBytes)
      throw new Error(
        `RSS reached ${mib(peak)} MiB, over the bound of ${mib(this.settings.rssLimitBytes)} MiB`,
      );
  }

  async run(opts: RunOptions): Promise<RunResult> {
    const property = fc.asyncProperty(fuzzCase(this.settings.crashEvery), (c) => {
      const one = this.runOne(c);
      this.current = one.catch(() => {});
      return one;
    });
    const before = this.caseNo;
    const details = await fc.check(property, {
      seed: opts.seed,
      numRuns: opts.numRuns,
      path: opts.path,
      interruptAfterTimeLimit: opts.timeMs,
      markInterruptAsFailure: false,
    });
    // A case cut off by the time limit keeps running: let it end before anything else.
    await this.current;
    const result: RunResult = {
      seed: opts.seed,
      casesRun: this.caseNo - before,
      interrupted: details.interrupted,
      failed: details.failed,
      shrinks: details.numShrinks,
    };
    if (details.failed) {
      result.counterexample = details.counterexample?.[0];
      result.path = details.counterexamplePath ?? undefined;
      result.error =
        details.errorInstance instanceof Error
          ? details.errorInstance.message
          : String(details.errorInstance);
      result.replay = `npm run fuzz -- --seed ${opts.seed} --path ${result.path}`;
    }
    return result;
  }

  /**
   * The end of a session: one last durability check over all the state the run built up, then
   * SIGTERM, which must exit 0. Returns the problems found (empty when all is well) and removes
   * the broker and its files.
   */
  async finish(): Promise<string[]> {
    const problems: string[] = [];
    await this.current;
    try {
      if (this.tainted || !this.broker.alive) await this.reset();
      this.crashChecks++;
      this.broker.takeErrors();
      await this.keeper.check();
      const errors = this.broker.takeErrors();
      if (errors.length > 0) throw new Error(`the broker logged errors:\n${errors.join('\n')}`);
    } catch (err) {
      problems.push(`final durability check: ${(err as Error).message}\n${this.broker.diagnostics()}`);
    }
    if (this.broker.alive) {
      // A broker that is asked to stop while peers are half-way through connecting must stop.
      const b = this.broker;
      const close = await openHalfDone({ mqttPort: b.mqttPort, wsPort: b.wsPort, creds: b.files.creds });
      const code = await b.stop(STOP_TIMEOUT_MS);
      close();
      if (code !== 0)
        problems.push(
          `SIGTERM at the end (with a half-sent upgrade and CONNECT open): ${code === null ? `no exit within ${STOP_TIMEOUT_MS / 1000} s` : `exit code ${code}`}\n${b.diagnostics()}`,
        );
    }
    await this.dispose();
    return problems;
  }

  /** Kills the broker and removes its files (idempotent). */
  async dispose(): Promise<void> {
    await this.broker.kill9();
    rmSync(this.dir, { recursive: true, force: true });
  }

  summary(): string {
    return (
      `${this.stats.summary()}; peak RSS ${(this.peakRss / 2 ** 20).toFixed(0)} MiB; ` +
      `${this.crashChecks} kill -9 checks; ${this.restarts} restarts after failures`
    );
  }
}

/** A run's outcome as text: the seed, and for a failure the error, counterexample and replay. */
export function describeResult(r: RunResult): string {
  const head = `seed ${r.seed}: ${r.casesRun} cases${r.interrupted ? ' (time limit reached)' : ''}`;
  if (!r.failed) return `${head}, no failure`;
  return [
    `${head}, FAILED after ${r.shrinks} shrinks`,
    `error: ${r.error}`,
    `minimal counterexample: ${fc.stringify(r.counterexample)}`,
    `replay: ${r.replay}`,
  ].join('\n');
}
