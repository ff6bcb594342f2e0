/**
 * SerialLink's reopen paths (issue 19): a reopen the agent asks for because the port stayed
 * silent, and a write the binding gave up on (SerialWriteTimeoutError). A scripted opener hands
 * out in-memory duplexes, so the test sees every open and close.
 */
import { Duplex } from 'node:stream';
import { SerialWriteTimeoutError } from '@mqtt-edge/serial-protocol/node';
import { describe, expect, it } from 'vitest';
import type { SerialPortConfig } from '../src/config.ts';
import type { LogLevel } from '../src/log.ts';
import { SerialLink } from '../src/serial-link.ts';

class FakePort extends Duplex {
  override _read(): void {}
  override _write(_c: Buffer, _e: BufferEncoding, cb: (err?: Error | null) => void): void {
    cb();
  }
}

function rig() {
  const opened: FakePort[] = [];
  const logs: Array<{ level: LogLevel; event: string; fields: Record<string, unknown> }> = [];
  let opens = 0;
  let closes = 0;
  const waiters: Array<() => void> = [];
  const config: SerialPortConfig = {
    name: 'p0',
    path: '/dev/fake',
    baud: 115200,
    framing: 'native',
    writeTimeoutMs: 5000,
  };
  const link = new SerialLink({
    config,
    log: {
      log: (level, event, fields = {}) => {
        logs.push({ level, event, fields });
      },
      enabled: () => true,
    },
    opener: async () => {
      const p = new FakePort();
      opened.push(p);
      return p;
    },
    onData: () => {},
    onOpen: () => {
      opens++;
      for (const w of waiters.splice(0)) w();
    },
    onClose: () => {
      closes++;
    },
    minBackoffMs: 10,
    maxBackoffMs: 20,
  });
  const nextOpen = () => new Promise<void>((resolve) => waiters.push(resolve));
  return { link, opened, logs, nextOpen, opens: () => opens, closes: () => closes };
}

describe('issue 19: SerialLink reopens', () => {
  it('issue 19.2: reopen() closes the open port and opens it again at once: no disconnect counted, no port-lost warning', async () => {
    const r = rig();
    const first = r.nextOpen();
    r.link.start();
    await first;
    const again = r.nextOpen();
    r.link.reopen();
    await again;
    expect(r.opened.length).toBe(2);
    expect(r.opened[0].destroyed).toBe(true);
    expect(r.link.state).toBe('open');
    expect(r.closes()).toBe(1);
    expect(r.link.counters).toMatchObject({ opens: 2, disconnects: 0 });
    expect(r.logs.filter((l) => l.event === 'port-lost')).toEqual([]);
    // The reopen's open is not news at info level; the first open was.
    expect(r.logs.filter((l) => l.event === 'port-open').map((l) => l.level)).toEqual(['info', 'debug']);
    // A closed port has nothing to reopen.
    await r.link.stop();
    r.link.reopen();
    expect(r.opened.length).toBe(2);
  });

  it('issue 19.1: a write the binding gave up on is counted as a write timeout, and the port is opened again', async () => {
    const r = rig();
    const first = r.nextOpen();
    r.link.start();
    await first;
    const again = r.nextOpen();
    r.opened[0].emit('error', new SerialWriteTimeoutError(5000));
    await again;
    expect(r.link.counters).toMatchObject({ writeTimeouts: 1, disconnects: 1, opens: 2 });
    expect(r.logs.find((l) => l.event === 'port-lost')?.fields.error).toMatch(/no progress for 5000 ms/);
    await r.link.stop();
  });
});
