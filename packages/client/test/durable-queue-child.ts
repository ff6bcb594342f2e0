/**
 * Child process for durable-queue-crash.test.ts: puts records as fast as it can and logs
 * `p <seq> <k>` once put() resolved (k determines the content), acks some of them out of
 * order and logs `a <seq>` before acking. The test SIGKILLs it at a random moment.
 * The log is a file written with writeSync, not stdout: a pipe the parent is slow to drain
 * queues writes in this process's memory, and SIGKILL would lose `a` lines of acks that the
 * queue had already persisted. stdout only carries progress (`n <count>`) for the kill timing.
 * Bounded: stops on its own after 20 s or 300,000 puts.
 */
import { openSync, writeSync } from 'node:fs';
import { DurableQueue } from '../src/node/durable-queue/index.ts';
import { crashMessage } from './durable-queue-crash-message.ts';

const [dir, roundText, logPath] = process.argv.slice(2);
const log = openSync(logPath, 'a');
const round = Number(roundText);
// DQ_COMMIT_WINDOW_MS: fsync batch with that group-commit window (issue 18.4)
const commitWindowMs = Number(process.env.DQ_COMMIT_WINDOW_MS ?? 0);
const q = await DurableQueue.open(dir, {
  segmentBytes: 64 << 10,
  cursorEveryAcks: 50,
  cursorIntervalMs: 20,
  commitWindowMs,
});
let k = round * 1_000_000;
const limit = k + 300_000;
const deadline = Date.now() + 20_000;
const resolved: number[] = [];
let count = 0;
let seed = round * 7919 + 1;
const rnd = (n: number) => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed % n;
};

function one(): void {
  if (k >= limit || Date.now() > deadline) return;
  const mine = k++;
  q.put(crashMessage(mine)).then(
    (seq) => {
      writeSync(log, `p ${seq} ${mine} .\n`);
      resolved.push(seq);
      if (++count % 100 === 0) process.stdout.write(`n ${count}\n`);
      if (resolved.length > 40) {
        const [ackSeq] = resolved.splice(rnd(20), 1);
        writeSync(log, `a ${ackSeq} .\n`);
        q.ack(ackSeq);
      }
      one();
    },
    (err: unknown) => {
      process.stderr.write(`put failed: ${String(err)}\n`);
      process.exit(2);
    },
  );
}
for (let i = 0; i < 64; i++) one();
