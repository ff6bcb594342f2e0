/**
 * Issue 13.2, the install a gateway operator does: every publishable package packed (`npm pack`)
 * and installed from its tarball into an empty directory with production dependencies only,
 * then run from there as plain Node (no NODE_OPTIONS, no source condition): broker-lite's bin,
 * a broker with a client exchange, the agent's `check` on the config it ships, the codec from
 * `node -e`, the .d.ts files from a TypeScript consumer, and `npx broker-lite` stopped by SIGTERM.
 * One build, one pack and one install for the whole file (about 10-20 s of it).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from './helpers/mosquitto.ts';
import { installPacked, type PackedInstall, ROOT, userEnv } from './helpers/packed-install.ts';

const run = promisify(execFile);
let inst: PackedInstall;
const children: ChildProcess[] = [];

beforeAll(async () => {
  inst = await installPacked();
  console.log(
    `install test: build ${inst.timings.buildS.toFixed(1)} s, pack ${inst.timings.packS.toFixed(1)} s, ` +
      `install ${inst.timings.installS.toFixed(1)} s`,
  );
}, 180_000);

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  inst?.remove();
});

/** Runs a command in the install directory as a user's shell would. */
function inApp(file: string, args: string[], timeout = 20_000) {
  return run(file, args, { cwd: inst.dir, env: userEnv(), timeout });
}

/** Every file under `dir` with its size and mtime: what "nothing was written here" compares. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else {
        const s = statSync(p);
        out.push(`${path.relative(dir, p)} ${s.size} ${s.mtimeMs}`);
      }
    }
  };
  walk(dir);
  return out.sort();
}

/** Resolves with the broker's `ready` JSON log line (its pid and ports), or rejects. */
function readyLine(child: ChildProcess, timeoutMs = 15_000): Promise<{ pid: number; ports: string }> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const t = setTimeout(
      () => reject(new Error(`no ready line in ${timeoutMs} ms:\n${out}\n${err}`)),
      timeoutMs,
    );
    child.stderr!.setEncoding('utf8').on('data', (s: string) => {
      err += s;
    });
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      for (const line of out.split('\n')) {
        if (!line.startsWith('{')) continue;
        const l = JSON.parse(line) as { msg?: string; pid: number; ports: string };
        if (l.msg === 'ready') {
          clearTimeout(t);
          resolve(l);
        }
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`exited (${code}) before the ready line:\n${out}\n${err}`));
    });
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/** Running: a process that exited but was not reaped yet (a zombie, state Z) is not. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

describe.skipIf(process.platform !== 'linux')('issue 13.2: the packed packages, installed', () => {
  let before: string[];

  it('hold dist/ JavaScript and .d.ts, no sources, and install without dev dependencies', () => {
    before = snapshot(path.join(inst.dir, 'node_modules', '@mqtt-edge'));
    for (const [name, t] of inst.tarballs) {
      expect(t.files, name).toContain('dist/index.js');
      expect(t.files, name).toContain('dist/index.d.ts');
      expect(
        t.files.filter((f) => f.startsWith('src/') || f.endsWith('.tsbuildinfo')),
        name,
      ).toEqual([]);
    }
    expect([...inst.tarballs.keys()].sort()).toEqual([
      '@mqtt-edge/agent',
      '@mqtt-edge/broker-lite',
      '@mqtt-edge/client',
      '@mqtt-edge/codec',
      '@mqtt-edge/log',
      '@mqtt-edge/serial-protocol',
    ]);
    const installed = readdirSync(path.join(inst.dir, 'node_modules'));
    // The TypeScript loader, the bundler and the compiler are dev tools; the serialport umbrella
    // is types only on Linux (an optional peer of serial-protocol's ./node elsewhere).
    for (const dev of ['tsx', 'esbuild', 'typescript', 'vitest', 'serialport'])
      expect(installed).not.toContain(dev);
    // WebSocket listeners frame MQTT on the socket themselves (issue 18.2): no ws at run time.
    expect(installed).not.toContain('ws');
    expect(readdirSync(path.join(inst.dir, 'node_modules', '@serialport'))).toContain('bindings-cpp');
  });

  it('broker-lite --version', async () => {
    const { stdout } = await inApp(inst.bin('broker-lite'), ['--version']);
    const { version } = JSON.parse(
      readFileSync(path.join(ROOT, 'packages/broker-lite/package.json'), 'utf8'),
    );
    expect(stdout).toBe(`broker-lite ${version}\n`);
  });

  it('a broker on a free port exchanges a message with the packed client', async () => {
    const conf = path.join(inst.dir, 'broker.conf');
    writeFileSync(conf, 'listener 0 127.0.0.1\nallow_anonymous true\nlog_dest stdout\nsys_interval 0\n');
    const broker = spawn(inst.bin('broker-lite'), ['-c', conf, '--log-format', 'json'], {
      cwd: inst.dir,
      env: userEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(broker);
    const { ports } = await readyLine(broker);
    const port = Number(ports);
    expect(port).toBeGreaterThan(0);
    const script = `
      import { connect } from '@mqtt-edge/client';
      const c = connect('mqtt://127.0.0.1:${port}', { clientId: 'install-test', protocolVersion: 5 });
      const got = new Promise((resolve) => c.on('message', (t, p) => resolve(t + ' ' + new TextDecoder().decode(p))));
      await c.subscribe({ filter: 'install/#', qos: 1 });
      await c.publish('install/test', 'from the tarball', { qos: 1 });
      console.log(await got);
      await c.end();
    `;
    const { stdout } = await inApp(process.execPath, ['--input-type=module', '-e', script]);
    expect(stdout).toBe('install/test from the tarball\n');
    broker.kill('SIGTERM');
    expect(await exited(broker)).toBe(0);
  });

  it('issue 14: the installed broker serves its status page (dist/status-page, no esbuild) and /metrics', async () => {
    const metricsPort = await freePort();
    const conf = path.join(inst.dir, 'broker-page.conf');
    writeFileSync(
      conf,
      `listener 0 127.0.0.1\nprotocol websockets\nstatus_page true\nallow_anonymous true\nlog_dest stdout\nsys_interval 0\nmetrics_listener ${metricsPort} 127.0.0.1\n`,
    );
    const broker = spawn(inst.bin('broker-lite'), ['-c', conf, '--log-format', 'json'], {
      cwd: inst.dir,
      env: userEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(broker);
    const port = Number((await readyLine(broker)).ports);
    const page = await fetch(`http://127.0.0.1:${port}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<script src="app.js"');
    expect((await fetch(`http://127.0.0.1:${port}/app.js`)).status).toBe(200);
    const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    expect(await metrics.text()).toMatch(/^# HELP mqtt_edge_broker_info /);
    broker.kill('SIGTERM');
    expect(await exited(broker)).toBe(0);
  });

  it('issue 13: a broker with the default settings loads its bin as 3 files, without ws or node:http', async () => {
    // Every ES module file costs Node's loader a few URL-to-path conversions at start; past
    // about 60 of them under a long install path V8 compiles that loop with TurboFan, which
    // stays in RSS (~4 MB: bench/RESULTS.md, "install"). A default start used 9 files.
    const log = path.join(inst.dir, 'loaded.txt');
    writeFileSync(log, '');
    writeFileSync(
      path.join(inst.dir, 'loaded-hooks.mjs'),
      `import { appendFileSync } from 'node:fs';
let log;
export function initialize(data) { log = data.log; }
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(log, r.url + '\\n');
  return r;
}
`,
    );
    writeFileSync(
      path.join(inst.dir, 'loaded-register.mjs'),
      `import { register } from 'node:module';
register('./loaded-hooks.mjs', import.meta.url, { data: { log: ${JSON.stringify(log)} } });
`,
    );
    const conf = path.join(inst.dir, 'broker-default.conf');
    writeFileSync(conf, 'listener 0 127.0.0.1\nallow_anonymous true\nlog_dest stdout\n');
    const broker = spawn(
      process.execPath,
      ['--import', './loaded-register.mjs', inst.bin('broker-lite'), '-c', conf, '--log-format', 'json'],
      { cwd: inst.dir, env: userEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(broker);
    await readyLine(broker);
    const loaded = [...new Set(readFileSync(log, 'utf8').split('\n').filter(Boolean))];
    broker.kill('SIGTERM');
    expect(await exited(broker)).toBe(0);
    const bin = loaded.filter((u) => u.includes('/@mqtt-edge/broker-lite/dist/bin/'));
    // cli.js, the chunk of everything a start runs, the broker core's entry (a dynamic import).
    expect(bin.length, bin.join('\n')).toBe(3);
    expect(loaded.filter((u) => /\/node_modules\/ws\/|^node:https?$/.test(u))).toEqual([]);
  });

  it('broker-lite passwd and check take the example config the package ships', async () => {
    const pkg = path.join(inst.dir, 'node_modules/@mqtt-edge/broker-lite');
    const example = readFileSync(path.join(pkg, 'broker-lite.example.conf'), 'utf8');
    expect(example).toContain('password_file /etc/broker-lite/passwd');
    const conf = path.join(inst.dir, 'example.conf');
    writeFileSync(
      conf,
      example
        .replaceAll('/etc/broker-lite/', `${inst.dir}/`)
        .replaceAll('/var/lib/broker-lite/', `${inst.dir}/`),
    );
    await inApp(inst.bin('broker-lite'), [
      'passwd',
      '-c',
      '-b',
      path.join(inst.dir, 'passwd'),
      'alice',
      's3cret',
    ]);
    const { stdout } = await inApp(inst.bin('broker-lite'), ['check', '-c', conf]);
    expect(stdout).toMatch(/password_file .*passwd \(1 users\)/);
    expect(stdout).toMatch(/: OK\n$/);
  });

  it('mqtt-edge-agent check -c on the example config the package ships', async () => {
    const example = path.join(inst.dir, 'node_modules/@mqtt-edge/agent/agent.example.yaml');
    const { stdout } = await inApp(inst.bin('mqtt-edge-agent'), ['check', '-c', example]);
    expect(stdout.split('\n')[0]).toBe(`${example}: ok`);
    expect(stdout).toMatch(/^ {2}id: gateway-1$/m);
    const json = await inApp(inst.bin('mqtt-edge-agent'), ['check', '--json', '-c', example]);
    expect(JSON.parse(json.stdout)).toMatchObject({
      agent: { id: 'gateway-1' },
      serial: [{ path: '/dev/ttyUSB0', baud: 115200, framing: 'native' }],
      mqtt: { url: 'mqtt://127.0.0.1:1883' },
    });
    const bad = path.join(inst.dir, 'bad.yaml');
    writeFileSync(bad, 'agent:\n  id: gw\nmqtt:\n  url: http://x\n');
    const refused = await inApp(inst.bin('mqtt-edge-agent'), ['check', '-c', bad]).catch((e) => e);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('mqtt.url');
  });

  it('the codec imports from the tarball in a plain node -e', async () => {
    const script = `
      import { encode, PacketParser } from '@mqtt-edge/codec';
      const bytes = encode({ type: 'publish', topic: 'a/b', payload: new TextEncoder().encode('hi'), qos: 0 });
      new PacketParser().push(bytes, (p) => console.log(p.type, p.topic, new TextDecoder().decode(p.payload)));
    `;
    const { stdout } = await inApp(process.execPath, ['--input-type=module', '-e', script]);
    expect(stdout).toBe('publish a/b hi\n');
  });

  it('the .d.ts files type-check a TypeScript consumer', async () => {
    writeFileSync(
      path.join(inst.dir, 'consumer.ts'),
      `import { encode, type PublishPacket } from '@mqtt-edge/codec';
import { connect, type MqttClient } from '@mqtt-edge/client';
import { FrameDecoder } from '@mqtt-edge/serial-protocol';
import { openSerialPort } from '@mqtt-edge/serial-protocol/node';
import { Broker } from '@mqtt-edge/broker-lite';
import { Agent, parseConfig } from '@mqtt-edge/agent';
const p: PublishPacket = { type: 'publish', topic: 't', payload: new Uint8Array(0), qos: 0, retain: false, dup: false };
const c: MqttClient = connect('mqtt://127.0.0.1:1');
const n: number = encode(p).length;
export { Agent, Broker, c, FrameDecoder, n, openSerialPort, parseConfig };
`,
    );
    writeFileSync(
      path.join(inst.dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          target: 'ES2022',
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          types: ['node'],
          typeRoots: [path.join(ROOT, 'node_modules/@types')],
        },
        files: ['consumer.ts'],
      }),
    );
    const tsc = path.join(ROOT, 'node_modules/typescript/bin/tsc');
    const r = await inApp(process.execPath, [tsc, '-p', inst.dir], 60_000).catch((e) => e);
    expect(`${r.stdout}${r.stderr ?? ''}`).toBe('');
  }, 60_000);

  it('issue 13 (small things): SIGTERM to `npx broker-lite` stops the broker and frees its port', async () => {
    const conf = path.join(inst.dir, 'npx.conf');
    writeFileSync(conf, 'listener 0 127.0.0.1\nallow_anonymous true\nlog_dest stdout\nsys_interval 0\n');
    const npx = spawn('npx', ['--no-install', 'broker-lite', '-c', conf, '--log-format', 'json'], {
      cwd: inst.dir,
      env: userEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(npx);
    const { pid, ports } = await readyLine(npx);
    // npm runs the bin through `sh -c`: the broker is not npm's own process.
    expect(pid).not.toBe(npx.pid);
    expect(await portOpen(Number(ports))).toBe(true);
    // The broker holds npm's stdout pipe: 'close' (every end of it closed) is its exit too.
    const closed = new Promise<'closed'>((resolve) => npx.once('close', () => resolve('closed')));
    npx.kill('SIGTERM');
    const late = new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), 10_000).unref());
    const how = await Promise.race([closed, late]);
    const left = alive(pid);
    if (left) process.kill(pid, 'SIGKILL');
    expect(how).toBe('closed');
    expect(left).toBe(false);
    expect(await portOpen(Number(ports))).toBe(false);
  }, 30_000);

  it('nothing wrote into the installed packages', () => {
    expect(snapshot(path.join(inst.dir, 'node_modules', '@mqtt-edge'))).toEqual(before);
  });
});
