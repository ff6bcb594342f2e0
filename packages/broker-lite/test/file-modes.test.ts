/**
 * Issue 12.7: the persistence files hold payloads and user names, so broker-lite creates them
 * 0600 and the directories it creates 0700, whatever the umask (the test clears it, so a mode
 * left to the default would show as 0666 / 0777), and tightens a file an older version left 0644.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RawClient, startBroker } from './helpers/raw-client.ts';
import { SnapshotWatch } from './helpers/snapshot-watch.ts';

const mode = (p: string): string => (fs.statSync(p).mode & 0o777).toString(8);

let root = '';
let umask = 0;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'bl-modes-'));
  umask = process.umask(0);
});
afterEach(() => {
  process.umask(umask);
  fs.rmSync(root, { recursive: true, force: true });
});

describe('issue 12.7: persistence file modes', () => {
  it('issue 12.7: the directories it creates are 0700, the log and every snapshot 0600', async () => {
    const dir = path.join(root, 'state', 'broker');
    const a = await startBroker({ persistenceDir: dir, autosaveIntervalSeconds: 1 });
    try {
      expect(mode(path.join(root, 'state'))).toBe('700');
      expect(mode(dir)).toBe('700');
      const file = path.join(dir, 'broker-lite.db');
      expect(mode(file)).toBe('600');
      const pub = (await RawClient.connect(a.port, { clientId: 'm', username: 'alice' })).client;
      pub.publish('secret/t', 'payload', 1, true, 1);
      await pub.expect('puback');
      pub.close();
      // the next autosave writes a snapshot (a temporary file renamed over the log)
      const ino = fs.statSync(file).ino;
      const watch = new SnapshotWatch(dir);
      await watch.nextAttempt().finally(() => watch.close());
      expect(fs.statSync(file).ino).not.toBe(ino);
      expect(mode(file)).toBe('600');
      expect(fs.readdirSync(dir)).toEqual(['broker-lite.db']);
    } finally {
      await a.close();
    }
  });

  it('issue 12.7: a log an older version left 0644, and a stale temporary snapshot, do not stay readable', async () => {
    const dir = path.join(root, 'db');
    const a = await startBroker({ persistenceDir: dir });
    await a.close();
    const file = path.join(dir, 'broker-lite.db');
    fs.chmodSync(file, 0o644);
    fs.writeFileSync(`${file}.tmp`, 'half a snapshot', { mode: 0o644 });
    const b = await startBroker({ persistenceDir: dir });
    try {
      expect(mode(file)).toBe('600');
      expect(fs.existsSync(`${file}.tmp`)).toBe(false);
    } finally {
      await b.close();
    }
  });

  it('issue 12.7: an unrecognised file moved aside is 0600', async () => {
    const dir = path.join(root, 'db');
    fs.mkdirSync(dir, { mode: 0o700 });
    fs.writeFileSync(path.join(dir, 'broker-lite.db'), 'not a broker-lite file', { mode: 0o644 });
    const a = await startBroker({ persistenceDir: dir });
    try {
      const aside = fs.readdirSync(dir).filter((f) => f.includes('.corrupt-'));
      expect(aside).toHaveLength(1);
      expect(mode(path.join(dir, aside[0]))).toBe('600');
      expect(mode(path.join(dir, 'broker-lite.db'))).toBe('600');
    } finally {
      await a.close();
    }
  });
});
