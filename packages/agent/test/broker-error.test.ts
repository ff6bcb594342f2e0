/**
 * Why the broker link is down: the client's transportError (ECONNREFUSED here: a port nobody
 * listens on) is logged once as broker-unreachable and shown in the status snapshot and text.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../src/agent.ts';
import { parseConfig } from '../src/config.ts';
import { createLogger } from '../src/log.ts';
import { formatStatus } from '../src/status.ts';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A loopback port that was free a moment ago: connecting to it is refused. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe('agent: broker link errors', () => {
  it('shows ECONNREFUSED as the reason the link is down, logged once per change', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'agent-brokererr-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const lines: Array<Record<string, unknown>> = [];
    let resolveSeen: () => void = () => undefined;
    const seen = new Promise<void>((r) => {
      resolveSeen = r;
    });
    const log = createLogger({
      level: 'info',
      format: 'json',
      write: (line) => {
        const o = JSON.parse(line) as Record<string, unknown>;
        lines.push(o);
        if (o.msg === 'broker-unreachable') resolveSeen();
      },
    });
    const config = parseConfig(
      {
        agent: { id: 'err', stateDir: path.join(dir, 'state'), healthInterval: 0 },
        serial: [{ path: path.join(dir, 'link'), name: 'link' }],
        mqtt: { url: `mqtt://127.0.0.1:${await closedPort()}`, reconnectMin: '20ms', reconnectMax: '40ms' },
        topics: { prefix: 'e' },
        queue: { fsync: 'never' },
      },
      { env: {} },
    );
    const agent = await Agent.start({
      config,
      log,
      openPort: async () => new PassThrough(),
      statusFile: false,
    });
    cleanups.push(() => agent.stop(100));
    await seen;
    // Several refused attempts, one log line: the reason did not change.
    await new Promise<void>((resolve) => {
      const check = () => {
        if (agent.counters.reconnects < 3) return;
        agent.client.off('reconnect', check);
        resolve();
      };
      agent.client.on('reconnect', check);
      check();
    });
    const s = agent.snapshot();
    expect(s.broker.connected).toBe(false);
    expect(s.broker.lastError).toMatch(/ECONNREFUSED/);
    expect(formatStatus(s, Date.now(), 60_000).text).toMatch(/DISCONNECTED.*last error: .*ECONNREFUSED/);
    expect(lines.filter((l) => l.msg === 'broker-unreachable')).toHaveLength(1);
  });
});
