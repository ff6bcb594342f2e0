import { mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger, fileDestination, formatJson, formatText } from '../src/log.ts';

const dir = mkdtempSync(join(tmpdir(), 'bl-log-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const T = new Date('2026-01-02T03:04:05.678Z');

describe('log line formats', () => {
  it('text: timestamp, level, message, key=value, quoting only when needed', () => {
    expect(
      formatText(T, 'notice', 'client connected', { clientId: 'dev-1', user: 'a b', n: 3, none: undefined }),
    ).toBe('2026-01-02T03:04:05.678Z notice      client connected clientId=dev-1 user="a b" n=3\n');
    expect(formatText(undefined, 'error', 'x', { e: new Error('boom'), o: { a: 1 }, empty: '' })).toBe(
      'error       x e=boom o="{\\"a\\":1}" empty=""\n',
    );
  });

  it('text: control characters from clients cannot forge lines or drive the terminal', () => {
    const line = formatText(undefined, 'notice', 'id\nfake line', {
      clientId: 'x\u001b[2J\r\n2026 error forged',
    });
    expect(line.split('\n')).toHaveLength(2);
    expect(line).not.toContain('\u001b');
    expect(line).toContain('\\x1b[2J');
  });

  it('json: one object per line, fields kept, reserved names moved aside', () => {
    const line = formatJson(T, 'warning', 'm\nx', {
      level: 'spoof',
      clientId: 'c',
      big: 10n,
      err: new Error('e'),
    });
    expect(line.endsWith('\n')).toBe(true);
    expect(line.indexOf('\n')).toBe(line.length - 1);
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

describe('logger', () => {
  it('filters by log_type, files subscribe/unsubscribe/websockets by logType, writes JSON to a file', () => {
    const path = join(dir, 'a.log');
    const logger = createLogger({
      types: ['error', 'notice', 'subscribe'],
      destinations: [fileDestination(path)],
      format: 'auto',
      timestamp: false,
    });
    logger.log('error', 'e1');
    logger.log('debug', 'd1');
    logger.log('information', 'i1');
    logger.log('notice', 'n1');
    logger.log('debug', 's1', { logType: 'subscribe', filter: 'a/#' });
    logger.log('notice', 'u1', { logType: 'unsubscribe' });
    expect(logger.enabled('subscribe')).toBe(true);
    expect(logger.enabled('debug')).toBe(false);
    logger.close();
    const lines = readFileSync(path, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.msg)).toEqual(['e1', 'n1', 's1']);
    expect(lines[2]).toEqual({ level: 'debug', msg: 's1', logType: 'subscribe', filter: 'a/#' });
  });

  it('reopen() follows a rotated log file (SIGHUP)', () => {
    const path = join(dir, 'b.log');
    const logger = createLogger({
      types: ['notice'],
      destinations: [fileDestination(path)],
      format: 'text',
      timestamp: true,
    });
    logger.log('notice', 'before');
    renameSync(path, `${path}.1`);
    logger.log('notice', 'still old');
    logger.reopen();
    logger.log('notice', 'after');
    logger.close();
    expect(readFileSync(`${path}.1`, 'utf8')).toMatch(/before\n.*still old\n$/);
    expect(readFileSync(path, 'utf8')).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z notice +after\n$/);
  });
});
