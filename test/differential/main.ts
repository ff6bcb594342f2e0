/**
 * `npm run differential -- [--transcripts] [--lanes N] [FILTER...]`: runs the scenarios whose id
 * contains one of the FILTERs (all without one) against both brokers and prints what no entry in
 * differences.ts explains, and with --transcripts both transcripts of every scenario run.
 * The same as the test, for writing scenarios and reading what each broker did.
 */
import { explain, report } from './compare.ts';
import { DIFFERENCES } from './differences.ts';
import { GROUPS } from './groups.ts';
import { runSuite } from './suite.ts';

const args = process.argv.slice(2);
const transcripts = args.includes('--transcripts');
const lanesAt = args.indexOf('--lanes');
const lanes = lanesAt < 0 ? 4 : Number(args[lanesAt + 1]);
const filters = args.filter((a, i) => !a.startsWith('--') && (lanesAt < 0 || i !== lanesAt + 1));
const wanted = (id: string) => filters.length === 0 || filters.some((f) => id.includes(f));

const started = Date.now();
const run = runSuite(GROUPS, lanes, wanted);
let failures = 0;
for (const [id, result] of run.results) {
  const r = await result;
  const { unexplained } = explain(id, r.mosquitto, r.brokerLite, DIFFERENCES);
  const clean = unexplained.mosquitto.length === 0 && unexplained.brokerLite.length === 0;
  if (!clean) failures++;
  if (!clean || transcripts) {
    const text = report(id, r.mosquitto, r.brokerLite, unexplained);
    process.stdout.write(`${clean ? text.replace(/^.*\n/, `scenario ${id}: same\n`) : text}\n\n`);
  }
}
await run.done;
process.stdout.write(
  `${run.results.size} scenarios, ${failures} with unexplained differences (${((Date.now() - started) / 1000).toFixed(1)} s)\n`,
);
process.exit(failures === 0 ? 0 : 1);
