/**
 * Issue 15 part 1: the differential suite. Each scenario (test/differential/groups.ts) runs
 * against Debian's mosquitto and broker-lite started from the same mosquitto.conf, and what the
 * clients observe must be the same, but for the differences test/differential/differences.ts
 * lists with their reasons. test/README.md, "The differential suite", says how it works.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diffLines, explain, maskLine, report } from './differential/compare.ts';
import { DIFFERENCES } from './differential/differences.ts';
import { GROUPS } from './differential/groups.ts';
import { DOC_PATH, renderDifferences } from './differential/render.ts';
import { runSuite, type SuiteRun } from './differential/suite.ts';
import { hasMosquitto } from './helpers/mosquitto.ts';

const HAS = hasMosquitto();
const SKIP = HAS ? '' : ' (skipped: /usr/sbin/mosquitto is not installed)';
if (!HAS) console.warn('mosquitto not installed (/usr/sbin/mosquitto): the differential suite is skipped');

/**
 * Groups run side by side (differential/suite.ts): most of a group's time is waiting on timers
 * under test and bridges. 4 lanes bring the suite from ~20 s to ~8 s on 2 cores.
 */
const LANES = 4;
/** A scenario's test waits for its group's lane, so for up to the whole run. */
const SCENARIO_TIMEOUT_MS = 120_000;

/** Scenario id -> the entries that explained something in it. */
const used = new Map<string, string[]>();
const ran = new Set<string>();

describe.skipIf(!HAS)(`differential suite: broker-lite vs Mosquitto${SKIP}`, () => {
  let run: SuiteRun | undefined;
  beforeAll(() => {
    run = runSuite(GROUPS, LANES);
  });
  afterAll(async () => {
    await run?.done;
  });

  for (const group of GROUPS) {
    describe(group.name, () => {
      for (const scenario of group.scenarios) {
        it(
          `${scenario.id}: ${scenario.title}`,
          async () => {
            const r = await (run as SuiteRun).results.get(scenario.id);
            if (r === undefined) throw new Error(`scenario ${scenario.id} was not run`);
            const { unexplained, used: entries } = explain(
              scenario.id,
              r.mosquitto,
              r.brokerLite,
              DIFFERENCES,
            );
            ran.add(scenario.id);
            used.set(scenario.id, entries);
            if (unexplained.mosquitto.length > 0 || unexplained.brokerLite.length > 0)
              expect.fail(
                `${report(scenario.id, r.mosquitto, r.brokerLite, unexplained)}\n\n--- mosquitto log (tail)\n${r.logs.mosquitto}\n--- broker-lite log (tail)\n${r.logs.brokerLite}`,
              );
          },
          SCENARIO_TIMEOUT_MS,
        );
      }
    });
  }

  it('every difference listed in differences.ts still shows in the scenarios that ran', () => {
    const shown = new Set([...used.values()].flat());
    const stale = DIFFERENCES.filter((d) => {
      // An entry whose scenarios did not all run (a filtered run) is not judged.
      const scenarios = d.scenarios?.map((s) => s.id) ?? [];
      if (scenarios.some((id) => !ran.has(id))) return false;
      if (d.property !== undefined && ran.size < allScenarioIds().length) return false;
      if (d.scenarios !== undefined)
        return scenarios.some((id) => !(used.get(id) ?? []).includes(d.id)) || !shown.has(d.id);
      return !shown.has(d.id);
    });
    expect(stale.map((d) => `${d.id}: ${d.title}`)).toEqual([]);
  });
});

function allScenarioIds(): string[] {
  return GROUPS.flatMap((g) => g.scenarios.map((s) => s.id));
}

describe('differential suite: the harness itself', () => {
  it('scenario ids are unique and every entry in differences.ts names scenarios that exist', () => {
    const ids = allScenarioIds();
    expect(new Set(ids).size).toBe(ids.length);
    const known = new Set(ids);
    const missing = DIFFERENCES.flatMap((d) => (d.scenarios ?? []).map((s) => s.id)).filter(
      (id) => !known.has(id),
    );
    expect(missing).toEqual([]);
    const entryIds = DIFFERENCES.map((d) => d.id);
    expect(new Set(entryIds).size).toBe(entryIds.length);
  });

  it('there are at least 60 scenarios', () => {
    expect(allScenarioIds().length).toBeGreaterThanOrEqual(60);
  });

  it('a difference no entry explains is reported; an entry explains exactly its lines', () => {
    const m = ['1 > connect c v3.1.1', '1 c: connack 0x05 sp=0'];
    const l = ['1 > connect c v3.1.1', '1 c: connack 0x04 sp=0'];
    expect(diffLines(m, l)).toEqual({
      mosquitto: ['1 c: connack 0x05 sp=0'],
      brokerLite: ['1 c: connack 0x04 sp=0'],
    });
    const none = explain('x.y', m, l, []);
    expect(none.unexplained.mosquitto).toHaveLength(1);
    const entry = {
      id: 'e',
      status: 'deliberate' as const,
      title: 't',
      reason: 'r',
      scenarios: [
        { id: 'x.y', mosquitto: ['1 c: connack 0x05 sp=0'], brokerLite: ['1 c: connack 0x04 sp=0'] },
      ],
    };
    const ok = explain('x.y', m, l, [entry]);
    expect(ok.unexplained).toEqual({ mosquitto: [], brokerLite: [] });
    expect(ok.used).toEqual(['e']);
    // One more line than the entry names is still a failure.
    const more = explain('x.y', [...m, '2 c: closed'], l, [entry]);
    expect(more.unexplained.mosquitto).toEqual(['2 c: closed']);
    // An entry for another scenario explains nothing here.
    expect(explain('x.z', m, l, [entry]).used).toEqual([]);
  });

  it('a property entry masks that property of that packet only', () => {
    const masks = [
      {
        id: 'p',
        status: 'deliberate' as const,
        title: 't',
        reason: 'r',
        property: { packets: ['connack'], name: 'receiveMaximum', mosquitto: '20', brokerLite: '65535' },
      },
    ];
    expect(maskLine('1 c: connack 0x00 sp=0 {"receiveMaximum":20,"topicAliasMaximum":10}', masks)).toBe(
      '1 c: connack 0x00 sp=0 {"topicAliasMaximum":10}',
    );
    expect(maskLine('1 c: connack 0x00 sp=0 {"receiveMaximum":20}', masks)).toBe('1 c: connack 0x00 sp=0');
    expect(maskLine('1 c: msg a q0 " {x" {"receiveMaximum":20}', masks)).toBe(
      '1 c: msg a q0 " {x" {"receiveMaximum":20}',
    );
    const r = explain(
      's',
      ['1 c: connack 0x00 sp=0 {"receiveMaximum":20}'],
      ['1 c: connack 0x00 sp=0 {"receiveMaximum":65535}'],
      masks,
    );
    expect(r).toEqual({ unexplained: { mosquitto: [], brokerLite: [] }, used: ['p'] });
  });

  it('docs/mosquitto-differences.md is rendered from differences.ts (npm run docs:differences)', () => {
    expect(readFileSync(DOC_PATH, 'utf8')).toBe(renderDifferences(DIFFERENCES));
  });
});
