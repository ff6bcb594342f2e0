/**
 * remote_username / remote_password against a Debian mosquitto that requires a password
 * (password_file made by `mosquitto_passwd -b -c`, allow_anonymous false): the right
 * credentials connect and forward (with the configured keepalive_interval, as mosquitto logs it);
 * wrong ones are refused, and both sides' logs say why.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { eventually, Recorder, startBridged } from './bridge-helpers.ts';
import { hasMosquitto, startMosquitto } from './helpers/mosquitto.ts';

const PASSWD_BIN = '/usr/bin/mosquitto_passwd';
const HAS = hasMosquitto() && existsSync(PASSWD_BIN);
if (!HAS)
  console.warn(
    'mosquitto or mosquitto_passwd not installed: bridge credentials test against mosquitto skipped',
  );

const cleanup: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
});

describe.skipIf(!HAS)('bridge credentials against mosquitto with a password file', () => {
  it('good credentials connect and forward; a wrong password is refused as not authorised', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mosquitto-auth-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const passwd = join(dir, 'passwd');
    execFileSync(PASSWD_BIN, ['-b', '-c', passwd, 'gw', 'right-pw']);
    execFileSync(PASSWD_BIN, ['-b', passwd, 'reader', 'reader-pw']);
    const m = await startMosquitto({ dir, config: `allow_anonymous false\npassword_file ${passwd}` });
    cleanup.push(() => m.stop());
    const b = await startBridged(
      [
        'connection good',
        `address 127.0.0.1:${m.port}`,
        'topic ok/# out 1',
        'remote_clientid gw-good',
        'remote_username gw',
        'remote_password right-pw',
        'keepalive_interval 23',
        'restart_timeout 1',
        'cleansession true',
        'connection bad',
        `address 127.0.0.1:${m.port}`,
        'topic no/# out 1',
        'remote_clientid gw-bad',
        'remote_username gw',
        'remote_password wrong-pw',
        'restart_timeout 1',
        'cleansession true',
      ].join('\n'),
    );
    cleanup.push(() => b.close());
    await b.waitLog((l) => l.message === 'bridge connected' && l.fields?.bridge === 'good');
    const up = await Recorder.open(m.port, ['ok/#', 'no/#'], { username: 'reader', password: 'reader-pw' });
    cleanup.push(() => up.end());
    const local = await Recorder.open(b.port, []);
    cleanup.push(() => local.end());
    await local.client.publish('ok/1', 'through', { qos: 1 });
    await up.until(() => up.on('ok/1').length === 1, 'ok/1 upstream');
    expect(up.on('ok/1')[0].payload).toBe('through');

    const failed = await b.waitLog(
      (l) => l.message === 'bridge connect failed' && l.fields?.bridge === 'bad',
    );
    expect(String(failed.fields?.reason)).toMatch(/not authori[sz]ed/i);
    const [good, bad] = b.bridges.stats();
    expect(good.state).toBe('connected');
    expect(bad.state).not.toBe('connected');
    expect(bad.connects).toBe(0);
    expect(bad.lastError).toMatch(/not authori[sz]ed/i);
    // Mosquitto's side of it (a refused client has no id in its log yet).
    expect(m.log()).toMatch(/New bridge connected from \S+ as gw-good \(p\d+, c1, k23, u'gw'\)/);
    expect(m.log()).toMatch(/Client <unknown> disconnected, not authori[sz]ed/);
    expect(m.log()).not.toMatch(/as gw-bad/);
    // What the bad bridge queued stays queued, not sent.
    await local.client.publish('no/1', 'kept', { qos: 1 });
    await eventually(() => b.bridges.stats()[1].queue.count === 1, 'no/1 in the bad bridge queue');
    expect(b.bridges.stats()[1].outAcked).toBe(0);
  }, 20_000);
});
