/**
 * Runs config groups against both brokers: each group's scenarios one after another on its own
 * pair of brokers (or a fresh pair per scenario), and up to `lanes` groups at once. Groups share
 * nothing (their own brokers, ports, directories and client ids), so running them side by side
 * changes no transcript; most of a group's time is waiting (timers under test, bridges), which
 * the other lanes fill. The test and `npm run differential` both run the suite this way.
 */
import { runScenario } from './run.ts';
import { passwordFile, type Side, startSide } from './targets.ts';
import type { ConfigGroup, Scenario } from './types.ts';

/** Log tails kept with a result (the brokers are gone by the time it is read). */
const LOG_TAIL = 3000;

export interface ScenarioResult {
  scenario: Scenario;
  mosquitto: string[];
  brokerLite: string[];
  /** The end of each broker's log (and its bridge remote's) when the scenario was done. */
  logs: { mosquitto: string; brokerLite: string };
}

export interface SuiteRun {
  /** Scenario id -> its result; rejects when its brokers could not start. */
  results: Map<string, Promise<ScenarioResult>>;
  /** Every group done and its brokers stopped. */
  done: Promise<void>;
}

async function startBoth(group: ConfigGroup, passwd: string | undefined): Promise<[Side, Side]> {
  const m = await startSide('mosquitto', group, passwd);
  try {
    return [m, await startSide('broker-lite', group, passwd)];
  } catch (err) {
    await m.stop();
    throw err;
  }
}

interface Pending {
  scenario: Scenario;
  resolve(r: ScenarioResult): void;
  reject(err: unknown): void;
}

async function runGroup(group: ConfigGroup, items: Pending[]): Promise<void> {
  let passwd: string | undefined;
  let shared: [Side, Side] | undefined;
  try {
    passwd = group.passwords === undefined ? undefined : await passwordFile(group.passwords);
    if (!group.freshPerScenario) shared = await startBoth(group, passwd);
  } catch (err) {
    for (const item of items) item.reject(err);
    return;
  }
  try {
    for (const item of items) {
      let fresh: [Side, Side] | undefined;
      try {
        if (shared === undefined) fresh = await startBoth(group, passwd);
        const [m, l] = (shared ?? fresh) as [Side, Side];
        const [tm, tl] = await Promise.all([
          runScenario(m.ports, item.scenario, group.asyncDeliveries),
          runScenario(l.ports, item.scenario, group.asyncDeliveries),
        ]);
        item.resolve({
          scenario: item.scenario,
          mosquitto: tm,
          brokerLite: tl,
          logs: { mosquitto: m.log().slice(-LOG_TAIL), brokerLite: l.log().slice(-LOG_TAIL) },
        });
      } catch (err) {
        item.reject(err);
      } finally {
        if (fresh !== undefined) await Promise.all(fresh.map((s) => s.stop()));
      }
    }
  } finally {
    if (shared !== undefined) await Promise.all(shared.map((s) => s.stop()));
  }
}

/** Starts the run at once; the scenarios whose id `wanted` accepts, in `lanes` lanes of groups. */
export function runSuite(
  groups: readonly ConfigGroup[],
  lanes: number,
  wanted: (id: string) => boolean = () => true,
): SuiteRun {
  const results = new Map<string, Promise<ScenarioResult>>();
  const jobs: Array<() => Promise<void>> = [];
  for (const group of groups) {
    const items: Pending[] = [];
    for (const scenario of group.scenarios) {
      if (!wanted(scenario.id)) continue;
      let pending: Pending | undefined;
      const result = new Promise<ScenarioResult>((resolve, reject) => {
        pending = { scenario, resolve, reject };
      });
      // Awaited by whoever reads it; a rejection nobody reads yet is not an unhandled one.
      result.catch(() => {});
      results.set(scenario.id, result);
      items.push(pending as Pending);
    }
    if (items.length > 0) jobs.push(() => runGroup(group, items));
  }
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < jobs.length) await jobs[next++]();
  };
  const done = Promise.all(Array.from({ length: Math.min(lanes, jobs.length) }, lane)).then(() => {});
  return { results, done };
}
