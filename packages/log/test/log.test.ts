/**
 * Issue 13.6: the one log line of broker-lite, the agent and firmware-sim. Its JSON shape, its
 * text form, and the syslog priority prefixes journald reads when the descriptor is its stream.
 */
import { fstatSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createSink,
  fileDestination,
  formatJson,
  formatText,
  functionDestination,
  isJournalStream,
  LEVELS,
  levelOf,
  PRIORITY,
} from '../src/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'mqtt-edge-log-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const T = new Date('2026-01-02T03:04:05.678Z');

describe('issue 13.6: level names', () => {
  it("issue 13.6: syslog's names and priorities; the names call sites used before map onto them", () => {
    expect(LEVELS).toEqual(['error', 'warning', 'notice', 'info', 'debug']);
    expect(LEVELS.map((l) => PRIORITY[l])).toEqual([3, 4, 5, 6, 7]);
    expect(levelOf('warn')).toBe('warning');
    expect(levelOf('information')).toBe('info');
    expect(levelOf('err')).toBe('error');
    expect(levelOf('toString')).toBeUndefined();
    expect(levelOf('fatal')).toBeUndefined();
  });
});

describe('issue 13.6: line formats', () => {
  it('text: timestamp, level, message, key=value, quoting only when needed', () => {
    expect(
      formatText(T, 'notice', 'client connected', { clientId: 'dev-1', user: 'a b', n: 3, none: undefined }),
    ).toBe('2026-01-02T03:04:05.678Z notice  client connected clientId=dev-1 user="a b" n=3');
    expect(formatText(undefined, 'error', 'x', { e: new Error('boom'), o: { a: 1 }, empty: '' })).toBe(
      'error   x e=boom o="{\\"a\\":1}" empty=""',
    );
  });

  it('text: control characters from clients cannot forge lines or drive the terminal', () => {
    const line = formatText(undefined, 'notice', 'id\nfake line', {
      clientId: 'x\u001b[2J\r\n2026 error forged',
    });
    expect(line).not.toContain('\n');
    expect(line).not.toContain('\u001b');
    expect(line).toContain('\\x1b[2J');
  });

  it('json: time, level, msg, then the fields; reserved names moved aside; never throws', () => {
    const line = formatJson(T, 'warning', 'm\nx', {
      level: 'spoof',
      clientId: 'c',
      big: 10n,
      err: new Error('e'),
    });
    expect(line).not.toContain('\n');
    expect(Object.keys(JSON.parse(line)).slice(0, 3)).toEqual(['time', 'level', 'msg']);
    expect(JSON.parse(line)).toEqual({
      time: '2026-01-02T03:04:05.678Z',
      level: 'warning',
      msg: 'm\nx',
      'field.level': 'spoof',
      clientId: 'c',
      big: '10',
      err: 'e',
    });
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(JSON.parse(formatJson(undefined, 'error', 'c', { cyclic }))).toEqual({
      level: 'error',
      msg: 'c',
      fields: '[unserialisable]',
    });
  });
});

describe('issue 13.6: sinks', () => {
  it('base fields come after msg and before the event fields; a throwing destination is survived', () => {
    const lines: string[] = [];
    const sink = createSink({
      destinations: [
        functionDestination(() => {
          throw new Error('EPIPE');
        }),
        functionDestination((l) => lines.push(l)),
      ],
      format: 'json',
      base: { agent: 'gw' },
      now: () => T,
    });
    sink.write('info', 'hello', { n: 1 });
    expect(lines).toEqual([
      '{"time":"2026-01-02T03:04:05.678Z","level":"info","msg":"hello","agent":"gw","n":1}',
    ]);
  });

  it("issue 13.6: journald's stream gets <N> priority prefixes; any other descriptor does not", () => {
    const path = join(dir, 'journal');
    const d = fileDestination(path);
    const st = fstatSync(d.fd as number, { bigint: true });
    expect(isJournalStream(d.fd as number, { JOURNAL_STREAM: `${st.dev}:${st.ino}` })).toBe(true);
    expect(isJournalStream(d.fd as number, { JOURNAL_STREAM: `${st.dev}:${st.ino + 1n}` })).toBe(false);
    expect(isJournalStream(d.fd as number, {})).toBe(false);
    const sink = createSink({ destinations: [{ ...d, journal: true }], format: 'json', timestamp: false });
    for (const l of LEVELS) sink.write(l, `a ${l} line`);
    sink.close();
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
    expect(lines.map((l) => l.slice(0, 3))).toEqual(['<3>', '<4>', '<5>', '<6>', '<7>']);
    expect(JSON.parse(lines[1].slice(3))).toEqual({ level: 'warning', msg: 'a warning line' });
  });

  it('reopen(): a file that cannot be opened again keeps the old descriptor (rotation: broker-lite cli-log)', () => {
    // Rotated away and a directory in its place: the old descriptor goes on.
    const again = join(dir, 'kept.log');
    const kept = createSink({ destinations: [fileDestination(again)], format: 'text' });
    renameSync(again, `${again}.1`);
    mkdirSync(again);
    kept.reopen();
    kept.write('notice', 'not lost');
    kept.close();
    expect(readFileSync(`${again}.1`, 'utf8')).toMatch(/not lost\n$/);
  });
});
