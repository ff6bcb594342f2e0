/**
 * `npm run fuzz -- [--seconds N] [--seed S] [--path P] [--runs N] [--rss-mb M] [--crash-every K]`
 *
 * Fuzzes a live broker-lite for N seconds (default 300) from seed S (default: a random one,
 * printed first). On a failure it prints the seed, the error, fast-check's minimal
 * counterexample and the command that replays it (`--seed S --path P`), and exits 1.
 */
import { DEFAULT_SETTINGS, describeResult, Fuzzer } from './fuzz.ts';

const USAGE = `usage: npm run fuzz -- [--seconds N] [--seed S] [--path P] [--runs N] [--rss-mb M] [--crash-every K]
  --seconds N      wall-clock budget, shrinking included (default 300)
  --seed S         replay this seed (default: a random one, printed)
  --path P         with --seed, replay exactly the counterexample fast-check printed
  --runs N         at most N cases (default 1000000)
  --rss-mb M       RSS bound for the broker in MiB (default ${DEFAULT_SETTINGS.rssLimitBytes / 2 ** 20})
  --crash-every K  about one case in K ends with kill -9 and the durability check (default ${DEFAULT_SETTINGS.crashEvery})
`;

function parse(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') {
      process.stdout.write(USAGE);
      process.exit(0);
    }
    const v = argv[i + 1];
    if (!a.startsWith('--') || v === undefined) {
      process.stderr.write(`bad argument '${a}'\n${USAGE}`);
      process.exit(2);
    }
    out[a.slice(2)] = v;
    i++;
  }
  return out;
}

function int(args: Record<string, string>, key: string, fallback: number): number {
  if (args[key] === undefined) return fallback;
  const n = Number(args[key]);
  if (!Number.isSafeInteger(n)) {
    process.stderr.write(`--${key} takes an integer, not '${args[key]}'\n`);
    process.exit(2);
  }
  return n;
}

const args = parse(process.argv.slice(2));
const known = new Set(['seconds', 'seed', 'path', 'runs', 'rss-mb', 'crash-every']);
for (const k of Object.keys(args))
  if (!known.has(k)) {
    process.stderr.write(`unknown option --${k}\n${USAGE}`);
    process.exit(2);
  }
const seed = int(args, 'seed', (Math.random() * 2 ** 31) | 0);
const seconds = int(args, 'seconds', 300);
process.stdout.write(`fuzz: seed ${seed}, ${seconds} s\n`);

const fuzzer = await Fuzzer.start({
  rssLimitBytes: int(args, 'rss-mb', DEFAULT_SETTINGS.rssLimitBytes / 2 ** 20) * 2 ** 20,
  crashEvery: int(args, 'crash-every', DEFAULT_SETTINGS.crashEvery),
});
const stop = () => {
  void fuzzer.dispose().then(() => process.exit(130));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
let failed = false;
try {
  const r = await fuzzer.run({
    seed,
    timeMs: seconds * 1000,
    numRuns: int(args, 'runs', 1_000_000),
    path: args.path,
  });
  process.stdout.write(`${describeResult(r)}\n`);
  failed = r.failed;
} finally {
  const problems = await fuzzer.finish();
  for (const p of problems) process.stdout.write(`FAILED ${p}\n`);
  failed ||= problems.length > 0;
  process.stdout.write(`fuzz: ${fuzzer.summary()}\n`);
  process.stdout.write(`fuzz: seed ${seed} ${failed ? 'FAILED' : 'passed'}\n`);
}
process.exit(failed ? 1 : 0);
