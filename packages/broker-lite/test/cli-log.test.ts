import { mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger, fileDestination } from '../src/log.ts';

const dir = mkdtempSync(join(tmpdir(), 'bl-log-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('logger', () => {
  it('filters by log_type, files subscribe/unsubscribe/websockets by logType, writes JSON to a file', () => {
    const path = join(dir, 'a.log');
    const logger = createLogger({
      types: ['error', 'notice', 'information', 'subscribe'],
      destinations: [fileDestination(path)],
      format: 'auto',
      timestamp: false,
    });
    logger.log('error', 'e1');
    logger.log('debug', 'd1');
    logger.log('information', 'i1');
    logger.log('notice', 'n1');
    logger.log('warning', 'w1');
    logger.log('debug', 's1', { logType: 'subscribe', filter: 'a/#' });
    logger.log('notice', 'u1', { logType: 'unsubscribe' });
    expect(logger.enabled('subscribe')).toBe(true);
    expect(logger.enabled('debug')).toBe(false);
    logger.close();
    const lines = readFileSync(path, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.msg)).toEqual(['e1', 'i1', 'n1', 's1']);
    // issue 13.6: the shared level names (Mosquitto's information is info).
    expect(lines.map((l) => l.level)).toEqual(['error', 'info', 'notice', 'debug']);
    expect(lines[3]).toEqual({ level: 'debug', msg: 's1', logType: 'subscribe', filter: 'a/#' });
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
