/**
 * `npm run differential -- [--transcripts] [FILTER...]`: runs the scenarios whose id contains
 * one of the FILTERs (all without one) against both brokers and prints what no entry in
 * differences.ts explains, and with --transcripts both transcripts of every scenario run.
 * The same as the test, for writing scenarios and reading what each broker did.
 */
import { explain, report } from './compare.ts';
import { DIFFERENCES } from './differences.ts';
import { GROUPS } from './groups.ts';
import { runScenario } from './run.ts';
import { passwordFile, type Side, startSide } from './targets.ts';

const args = process.argv.slice(2);
const transcripts = args.includes('--transcripts');
const filters = args.filter((a) => !a.startsWith('--'));
const wanted = (id: string) => filters.length === 0 || filters.some((f) => id.includes(f));

let failures = 0;
let count = 0;
for (const group of GROUPS) {
  const scenarios = group.scenarios.filter((s) => wanted(s.id));
  if (scenarios.length === 0) continue;
  const passwd = group.passwords === undefined ? undefined : await passwordFile(group.passwords);
  const start = async (): Promise<[Side, Side]> => [
    await startSide('mosquitto', group, passwd),
    await startSide('broker-lite', group, passwd),
  ];
  let sides = group.freshPerScenario ? undefined : await start();
  for (const s of scenarios) {
    const pair = sides ?? (await start());
    const [tm, tl] = await Promise.all([
      runScenario(pair[0].ports, s, group.asyncDeliveries),
      runScenario(pair[1].ports, s, group.asyncDeliveries),
    ]);
    count++;
    const { unexplained } = explain(s.id, tm, tl, DIFFERENCES);
    const clean = unexplained.mosquitto.length === 0 && unexplained.brokerLite.length === 0;
    if (!clean) failures++;
    if (!clean || transcripts) {
      const r = report(s.id, tm, tl, unexplained);
      process.stdout.write(`${clean ? r.replace(/^.*\n/, `scenario ${s.id}: same\n`) : r}\n\n`);
    }
    if (sides === undefined) for (const side of pair) await side.stop();
  }
  if (sides !== undefined) for (const side of sides) await side.stop();
  sides = undefined;
}
process.stdout.write(`${count} scenarios, ${failures} with unexplained differences\n`);
process.exit(failures === 0 ? 0 : 1);
