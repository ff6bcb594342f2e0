/**
 * Child process for durable-queue-disk-full.test.ts: puts ~1 KiB messages, 8 at a time, into a
 * queue on a nearly full disk until one is refused; prints `p <seq>` for every put that resolved,
 * `e <code>` for the refusal, and `full` once every put in flight has settled. Then it waits for
 * the test's SIGKILL (bounded: it exits by itself after 20 s).
 */
import { DurableQueue } from '../src/node/durable-queue/index.ts';

const [dir] = process.argv.slice(2);
const q = await DurableQueue.open(dir, { retryIntervalMs: 60_000 });
setTimeout(() => process.exit(3), 20_000);
let k = 0;
let code: string | undefined;
let inFlight = 0;
function one(): void {
  if (code !== undefined || k >= 5000) {
    if (inFlight === 0) process.stdout.write(`e ${code}\nfull\n`);
    return;
  }
  inFlight++;
  const payload = Buffer.alloc(1000, k % 251);
  q.put({ topic: `gw/dev/${k++}`, payload: new Uint8Array(payload), qos: 1, retain: false }).then(
    (seq) => {
      process.stdout.write(`p ${seq}\n`);
      inFlight--;
      one();
    },
    (err: { code?: string }) => {
      code ??= err.code ?? String(err);
      inFlight--;
      one();
    },
  );
}
for (let i = 0; i < 8; i++) one();
