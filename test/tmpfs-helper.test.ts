import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { mountTmpfs, type Tmpfs, tmpfsUnavailable } from './helpers/tmpfs.ts';

const why = tmpfsUnavailable();

describe.skipIf(why !== undefined)(`tmpfs helper${why ? ` (skipped: ${why})` : ''}`, () => {
  let fs: Tmpfs | undefined;
  afterEach(() => fs?.unmount());

  it('fills to ENOSPC and frees again', () => {
    fs = mountTmpfs(256 * 1024);
    fs.fill();
    expect(fs.freeBytes()).toBeLessThan(4096);
    let code: string | undefined;
    try {
      writeFileSync(path.join(fs.dir, 'x'), Buffer.alloc(64 * 1024));
    } catch (err) {
      code = (err as NodeJS.ErrnoException).code;
    }
    expect(code).toBe('ENOSPC');
    fs.free();
    expect(fs.freeBytes()).toBeGreaterThan(200 * 1024);
    writeFileSync(path.join(fs.dir, 'x'), Buffer.alloc(64 * 1024));
  });
});
