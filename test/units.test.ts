/**
 * Issue 13.4: the systemd units the packages ship. `systemd-analyze verify` parses them as
 * systemd would (unknown keys, bad values, an ExecStart that is not executable), `security
 * --offline` scores their sandbox, and the paths agree with the example configs and the bins.
 * No systemd is started: a test cannot enable a service here; the README's install steps are
 * what a Raspberry Pi runs.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers/packed-install.ts';

const ANALYZE = '/usr/bin/systemd-analyze';
const hasAnalyze = spawnSync(ANALYZE, ['--version'], { stdio: 'ignore' }).status === 0;
if (!hasAnalyze) console.warn('units test: systemd-analyze missing (Debian package systemd): verify skipped');

const UNITS = {
  broker: path.join(ROOT, 'packages/broker-lite/broker-lite.service'),
  agent: path.join(ROOT, 'packages/agent/mqtt-edge-agent.service'),
};

/** The [Service] section as key -> values (keys may repeat). */
function service(file: string): Map<string, string[]> {
  const text = readFileSync(file, 'utf8');
  const section = text.slice(text.indexOf('[Service]'), text.indexOf('[Install]'));
  const m = new Map<string, string[]>();
  for (const line of section.split('\n')) {
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (kv) m.set(kv[1], [...(m.get(kv[1]) ?? []), kv[2]]);
  }
  return m;
}

describe('issue 13.4: systemd units', () => {
  it.skipIf(!hasAnalyze)('systemd-analyze verify accepts both units', () => {
    const r = spawnSync(ANALYZE, ['verify', '--man=no', UNITS.broker, UNITS.agent], { encoding: 'utf8' });
    expect(`${r.stdout}${r.stderr}`).toBe('');
    expect(r.status).toBe(0);
  });

  it.skipIf(!hasAnalyze)('their sandboxes score "OK" in systemd-analyze security (below 2.5 of 10)', () => {
    for (const unit of Object.values(UNITS)) {
      const out = execFileSync(ANALYZE, ['security', '--offline=true', '--no-pager', unit], {
        encoding: 'utf8',
      });
      const score = Number(/Overall exposure level for \S+: ([\d.]+)/.exec(out)?.[1]);
      expect(score, unit).toBeLessThan(2.5);
    }
  });

  it('are hardened, reload with SIGHUP after a check, and stop retrying a bad config', () => {
    for (const [name, file] of Object.entries(UNITS)) {
      const s = service(file);
      expect(s.get('User'), name).toBeDefined();
      for (const key of ['NoNewPrivileges', 'ProtectHome', 'PrivateTmp', 'RestrictSUIDSGID']) {
        expect(s.get(key), `${name} ${key}`).toEqual(['yes']);
      }
      expect(s.get('ProtectSystem')).toEqual(['strict']);
      expect(s.get('CapabilityBoundingSet')).toEqual(['']);
      const reload = s.get('ExecReload') ?? [];
      expect(reload.at(-1)).toBe('/bin/kill -HUP $MAINPID');
      expect(reload[0]).toMatch(/ check -c /);
    }
    expect(service(UNITS.broker).get('RestartPreventExitStatus')).toEqual(['3']);
    expect(service(UNITS.agent).get('RestartPreventExitStatus')).toEqual(['2']);
    const agent = service(UNITS.agent);
    expect(agent.get('SupplementaryGroups')).toEqual(['dialout']);
    expect(agent.get('DevicePolicy')).toEqual(['closed']);
    expect(agent.get('DeviceAllow')).toContain('char-ttyUSB rw');
  });

  it('issue 18.2: the broker runs with one malloc arena (what the conns bench measures it with)', () => {
    // bench/areas/conns.ts starts broker-lite with this unit's Environment= lines.
    expect(service(UNITS.broker).get('Environment')).toEqual(['MALLOC_ARENA_MAX=1']);
    expect(readFileSync(path.join(ROOT, 'bench/areas/conns.ts'), 'utf8')).toContain('unitEnvironment()');
  });

  it('run the bins the packages install, on the example configs, writing to their StateDirectory', () => {
    const broker = service(UNITS.broker);
    const bins = (dir: string) =>
      Object.keys(JSON.parse(readFileSync(path.join(ROOT, dir, 'package.json'), 'utf8')).bin);
    expect(broker.get('ExecStart')).toEqual([
      `/usr/bin/env ${bins('packages/broker-lite')[0]} -c /etc/broker-lite/broker-lite.conf`,
    ]);
    const example = readFileSync(path.join(ROOT, 'packages/broker-lite/broker-lite.example.conf'), 'utf8');
    expect(example).toContain(`persistence_location /var/lib/${broker.get('StateDirectory')![0]}/`);

    const agent = service(UNITS.agent);
    expect(agent.get('ExecStart')).toEqual([
      `/usr/bin/env ${bins('packages/agent')[0]} -c /etc/mqtt-edge/agent.yaml`,
    ]);
    // The agent's stateDir defaults to $STATE_DIRECTORY, which StateDirectory= sets.
    expect(agent.get('StateDirectory')).toEqual(['mqtt-edge-agent']);
    expect(readFileSync(path.join(ROOT, 'packages/agent/agent.example.yaml'), 'utf8')).not.toMatch(
      /^\s+stateDir:/m,
    );
    // status.json, rewritten every 2 s, on the tmpfs RuntimeDirectory= makes (issue 18.4), kept
    // after a stop so `status` can say what the agent last saw.
    expect(agent.get('RuntimeDirectory')).toEqual(['mqtt-edge-agent']);
    expect(agent.get('RuntimeDirectoryPreserve')).toEqual(['yes']);
    expect(agent.get('ExecStart')![0]).not.toContain('statusDir');
  });
});
