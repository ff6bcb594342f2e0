/**
 * Issue 12.12, the agent around its durable queue: a start on a full disk waits for room
 * instead of exiting (the supervisor would only restart it into the same full disk), and drops
 * under the default bound are logged once when they start and then summarised, not per reading.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { DurableQueue } from '@mqtt-edge/client';
import { afterEach, describe, expect, it } from 'vitest';
import { mountTmpfs, tmpfsUnavailable } from '../../../test/helpers/tmpfs.ts';
import { Agent } from '../src/agent.ts';
import { parseConfig } from '../src/config.ts';
import { createLogger } from '../src/log.ts';
import { queueOptions } from '../src/queue.ts';
import { type AgentStatus, formatStatus } from '../src/status.ts';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

type Line = Record<string, unknown> & { msg: string; level: string };

/** A JSON logger whose lines are kept, and a way to wait for one. */
function capture() {
  const lines: Line[] = [];
  const waiting: Array<{ pred: (l: Line) => boolean; resolve: (l: Line) => void }> = [];
  const log = createLogger({
    level: 'info',
    format: 'json',
    write: (text) => {
      const l = JSON.parse(text) as Line;
      lines.push(l);
      for (const w of waiting.splice(0)) {
        if (w.pred(l)) w.resolve(l);
        else waiting.push(w);
      }
    },
  });
  const next = (pred: (l: Line) => boolean) =>
    new Promise<Line>((resolve) => {
      const hit = lines.find(pred);
      if (hit) resolve(hit);
      else waiting.push({ pred, resolve });
    });
  return { log, lines, next };
}

const why = tmpfsUnavailable();

describe('issue 12.12: the agent and its queue', () => {
  it.skipIf(why !== undefined)(
    `issue 12.12: started while its disk is full, the agent waits for room (logged), then starts by itself${why ? ` (skipped: ${why})` : ''}`,
    async () => {
      const fs = mountTmpfs(1 << 20);
      cleanups.push(() => fs.unmount());
      const dir = path.join(fs.dir, 'queue');
      // a queue from an earlier run, with readings in it
      const earlier = await DurableQueue.open(dir);
      for (let i = 0; i < 10; i++)
        await earlier.put({ topic: 'q/d/t', payload: new Uint8Array(100), qos: 1, retain: false });
      await earlier.close();
      const stateDir = mkdtempSync(path.join(os.tmpdir(), 'agent-qdisk-'));
      cleanups.push(() => rmSync(stateDir, { recursive: true, force: true }));
      const config = parseConfig(
        {
          agent: { id: 'qdisk', stateDir, healthInterval: 0 },
          serial: [{ path: path.join(stateDir, 'link'), name: 'link' }],
          mqtt: { url: 'mqtt://127.0.0.1:1', reconnectMin: '1s', reconnectMax: '5s' },
          topics: { prefix: 'q' },
          queue: { dir },
        },
        { env: {} },
      );
      const { log, lines, next } = capture();
      fs.fill();
      let started: Agent | undefined;
      const starting = Agent.start({
        config,
        log,
        openPort: async () => new PassThrough(),
        statusFile: false,
      });
      starting.then((a) => {
        started = a;
        cleanups.push(() => a.stop(100));
      });
      const refused = await next((l) => l.msg === 'queue-open-failed');
      expect(refused).toMatchObject({ level: 'error', code: 'NO_SPACE' });
      expect(started).toBeUndefined();
      fs.free();
      const agent = await starting;
      expect(agent.queueStats().count).toBe(10);
      expect(lines.filter((l) => l.msg === 'queue-open-failed')).toHaveLength(1);
      expect(lines.find((l) => l.msg === 'queue-open')).toMatchObject({
        messages: 10,
        maxBytes: 256 * 2 ** 20,
        dropPolicy: 'reject-new',
      });
    },
  );

  it('issue 12.12: drops are logged when they start and in a summary, not one line per reading', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'agent-qdrop-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const config = parseConfig(
      {
        serial: [{ path: '/dev/null' }],
        mqtt: { url: 'mqtt://127.0.0.1:1' },
        queue: { dir, maxBytes: '2KiB', fsync: 'never', dropPolicy: 'drop-oldest' },
      },
      { env: {} },
    );
    const { log, lines, next } = capture();
    const q = await DurableQueue.open(dir, { ...queueOptions(config.queue, log), reportIntervalMs: 50 });
    cleanups.push(() => q.close());
    const t0 = Date.now();
    for (let i = 0; i < 200; i++)
      await q.put({ topic: 'q/d/t', payload: new Uint8Array(95), qos: 1, retain: false });
    const dropsFor = Date.now() - t0;
    expect(q.stats().droppedOldest).toBeGreaterThan(150);
    const end = await next((l) => l.msg === 'queue-dropped');
    expect(end).toMatchObject({
      level: 'warning',
      reason: 'maxBytes',
      dropped: q.stats().droppedOldest,
      ongoing: false,
    });
    const started = lines.filter((l) => l.msg === 'queue-dropping' && l.ongoing === undefined);
    expect(started).toHaveLength(1);
    expect(started[0]).toMatchObject({ level: 'warning', reason: 'maxBytes', bound: 2048, fromSeq: 1 });
    // the rest are summaries while it lasted, one per reportIntervalMs: lines follow time, not readings
    const summaries = lines.filter((l) => l.msg === 'queue-dropping' && l.ongoing === true);
    expect(summaries.length).toBeLessThanOrEqual(Math.ceil(dropsFor / 50) + 1);
    expect(summaries.length + 2).toBeLessThan(q.stats().droppedOldest / 10);
  });

  it('issue 12.12: status says when the queue cannot write and that readings are not acknowledged', () => {
    const now = Date.now();
    const s: AgentStatus = {
      pid: process.pid,
      agentId: 'a',
      startedAt: now - 60_000,
      updatedAt: now,
      broker: { url: 'mqtt://x', connected: true, since: now - 60_000, reconnects: 0, lastError: undefined },
      queue: {
        dir: '/q',
        count: 3,
        bytes: 300,
        oldestAgeMs: 1000,
        droppedOldest: 0,
        rejectedNew: 0,
        segments: 1,
        failed: true,
        writeError: { code: 'NO_SPACE', message: 'ENOSPC', since: now - 30_000 },
        writeFailures: 30,
        failedPuts: 400,
      },
      ports: [],
      counters: {},
    };
    expect(formatStatus(s, now, 10_000).text).toMatch(
      /NOT WRITABLE \(NO_SPACE for 30\.0 s\): readings are not acknowledged/,
    );
  });
});
