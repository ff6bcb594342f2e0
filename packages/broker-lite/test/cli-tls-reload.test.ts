/**
 * Issue 13.5: broker-lite (a process) reloads its listeners' certificate, key and CA on SIGHUP,
 * as a renewal needs (Let's Encrypt, a local CA): a new TLS connection gets the new certificate
 * (its fingerprint), a connection made before keeps working on the old one, and files that do
 * not load keep the old certificate, logged with the reason. For an MQTT and a WebSocket listener.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, writeFileSync } from 'node:fs';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { followJsonLog, type LogWaiter } from '../../../test/helpers/json-log.ts';
import { HAS_OPENSSL, TestPki } from '../../../test/helpers/tls.ts';

const BIN = fileURLToPath(new URL('../bin/broker-lite.js', import.meta.url));
if (!HAS_OPENSSL) console.warn('openssl not installed: the TLS reload test is skipped');

type Line = Record<string, unknown> & { msg: string; level: string };

class BrokerProcess {
  lines: Line[] = [];
  waiters: Array<LogWaiter<Line>> = [];
  stderrTail = '';
  readonly child: ChildProcess;
  constructor(conf: string) {
    this.child = spawn(process.execPath, [BIN, '-c', conf, '--log-format', 'json'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    followJsonLog(this.child, this);
  }
  /** SIGHUP; resolves with the TLS line of each listener (two) once both are logged. */
  async reload(): Promise<Line[]> {
    const from = this.lines.length;
    this.child.kill('SIGHUP');
    const tlsLine = (l: Line) => /^(reloaded TLS certificate|TLS files) for the listener on port/.test(l.msg);
    await this.wait((l) => this.lines.slice(from).filter(tlsLine).length >= 2 && tlsLine(l), from);
    return this.lines.slice(from).filter(tlsLine);
  }

  wait(pred: (l: Line) => boolean, from = 0): Promise<Line> {
    const hit = this.lines.slice(from).find(pred);
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no such log line; stderr:\n${this.stderrTail}`)), 15_000);
      this.waiters.push({
        pred,
        resolve: (l) => {
          clearTimeout(t);
          resolve(l);
        },
      });
    });
  }
}

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** The fingerprint of the certificate a new TLS handshake with the listener presents. */
function servedFingerprint(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => {
      const fp = s.getPeerCertificate().fingerprint256;
      s.end();
      resolve(fp);
    });
    s.once('error', reject);
  });
}

const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;

describe.skipIf(!HAS_OPENSSL)('issue 13.5: broker-lite reloads listener certificates on SIGHUP', () => {
  it('issue 13.5: renewed files serve new connections, old ones keep working, bad files keep the old certificate', async () => {
    const pki = new TestPki('bl-tls-reload-')
      .ca()
      .leaf('one', { cn: 'localhost', san: 'DNS:localhost,IP:127.0.0.1' })
      .leaf('two', { cn: 'localhost', san: 'DNS:localhost,IP:127.0.0.1' })
      .leaf('three', { cn: 'localhost', san: 'DNS:localhost,IP:127.0.0.1' });
    cleanups.push(() => pki.remove());
    const ca = pki.read('ca.crt');
    // The paths a renewal writes to, as Let's Encrypt's live/ directory.
    const cert = pki.file('live-cert.pem');
    const key = pki.file('live-key.pem');
    copyFileSync(pki.file('one.crt'), cert);
    copyFileSync(pki.file('one.key'), key);
    const conf = pki.file('broker.conf');
    writeFileSync(
      conf,
      [
        'allow_anonymous true',
        'sys_interval 0',
        'listener 0 127.0.0.1',
        `certfile ${cert}`,
        `keyfile ${key}`,
        'listener 0 127.0.0.1',
        'protocol websockets',
        `certfile ${cert}`,
        `keyfile ${key}`,
        '',
      ].join('\n'),
    );
    const b = new BrokerProcess(conf);
    cleanups.push(() => b.child.kill('SIGKILL'));
    const ready = await b.wait((l) => l.msg === 'ready');
    const [port, wsPort] = String(ready.ports).split(',').map(Number);
    const fp1 = fingerprint(pki.read('one.crt'));
    expect(await servedFingerprint(port, ca)).toBe(fp1);
    expect(await servedFingerprint(wsPort, ca)).toBe(fp1);

    // A client connected before the renewal.
    const old = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, {
      ca,
      servername: 'localhost',
      reconnectPeriod: 0,
      clientId: 'before-renewal',
    });
    cleanups.push(() => old.endAsync(true));
    await old.subscribeAsync('renew/#', { qos: 1 });

    // Renewal: new files at the same paths, then SIGHUP.
    copyFileSync(pki.file('two.crt'), cert);
    copyFileSync(pki.file('two.key'), key);
    const fp2 = fingerprint(pki.read('two.crt'));
    const renewed = await b.reload();
    expect(renewed.map((l) => l.msg)).toEqual([
      `reloaded TLS certificate for the listener on port ${port}`,
      `reloaded TLS certificate for the listener on port ${wsPort}`,
    ]);
    for (const l of renewed) {
      expect(l.level).toBe('notice');
      expect(l.fingerprint).toBe(fp2);
    }
    expect(await servedFingerprint(port, ca)).toBe(fp2);
    expect(await servedFingerprint(wsPort, ca)).toBe(fp2);

    // The connection from before still has the old certificate, and still works.
    const oldSocket = (old as unknown as { stream: tls.TLSSocket }).stream;
    expect(oldSocket.getPeerCertificate().fingerprint256).toBe(fp1);
    const got = new Promise<string>((resolve) => old.once('message', (_t, p) => resolve(p.toString())));
    await old.publishAsync('renew/after', 'still here', { qos: 1 });
    expect(await got).toBe('still here');

    // Files that do not load keep the renewed certificate, each logged with why: a key that is
    // not the certificate's, garbage for a certificate, an empty key (read while being written).
    const bad: Array<[string, () => void, RegExp]> = [
      ['a key that does not match', () => copyFileSync(pki.file('three.key'), key), /does not match/],
      [
        'garbage for a certificate',
        () => {
          copyFileSync(pki.file('two.key'), key);
          writeFileSync(cert, 'not a certificate\n');
        },
        /TLS files for port \d+: /,
      ],
      [
        'an empty key',
        () => {
          copyFileSync(pki.file('two.crt'), cert);
          writeFileSync(key, '');
        },
        /TLS files for port \d+: /,
      ],
    ];
    for (const [what, damage, why] of bad) {
      damage();
      const refused = await b.reload();
      expect(
        refused.map((l) => l.level),
        what,
      ).toEqual(['error', 'error']);
      for (const l of refused) expect(l.msg, what).toMatch(/not reloaded, keeping the old ones: /);
      expect(refused[0].msg, what).toMatch(why);
      expect(await servedFingerprint(port, ca), what).toBe(fp2);
      expect(await servedFingerprint(wsPort, ca), what).toBe(fp2);
    }
    expect(b.child.exitCode).toBe(null);
  }, 60_000);
});
