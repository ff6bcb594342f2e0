import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Packet, PublishPacket } from '@mqtt-edge/codec';
import { afterEach, describe, expect, it } from 'vitest';
import { RawClient, text } from './helpers/raw-client.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const CHILD = `
const { Broker } = await import('@mqtt-edge/broker-lite');
const b = new Broker({ listeners: [{ port: 0, host: '127.0.0.1', protocol: 'mqtt' }], persistenceDir: process.env.DIR, sysInterval: 0 });
await b.listen();
console.log('PORT ' + b.addresses[0].port);
`;

function spawnBroker(dir: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD], {
    cwd: ROOT,
    env: { ...process.env, DIR: dir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /PORT (\d+)/.exec(out);
      if (m) resolve({ child, port: Number(m[1]) });
    });
    child.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.once('exit', (code) => reject(new Error(`broker exited ${code}: ${err}`)));
  });
}

/**
 * A QoS 2 receiver as the spec describes it (method B: deliver on the first PUBLISH of an id,
 * keep the id until PUBREL): it survives its connection, as a clean-session-false client's
 * state must, so a re-send under a new id shows up as a second delivery.
 */
class Receiver {
  readonly delivered: string[] = [];
  private readonly pending = new Set<number>();
  onPublish(p: PublishPacket): void {
    if (p.qos === 2) {
      if (this.pending.has(p.packetId as number)) return;
      this.pending.add(p.packetId as number);
    }
    this.delivered.push(text(p));
  }
  onPubrel(pid: number): void {
    this.pending.delete(pid);
  }
}

async function expectPacket<T extends Packet['type']>(
  c: RawClient,
  type: T,
): Promise<Extract<Packet, { type: T }>> {
  return c.expect(type, 5000);
}

describe('exactly once across kill -9', () => {
  it('re-sends an unacknowledged PUBLISH with the same packet id and DUP, and PUBREL for a PUBREC-ed one', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'broker-lite-eo-'));
    dirs.push(dir);
    let child: ChildProcess | null = null;
    try {
      const first = await spawnBroker(dir);
      child = first.child;
      const rx = new Receiver();
      const sub = (await RawClient.connect(first.port, { clientId: 'eo-sub', clean: false })).client;
      await sub.subscribe('eo/#', 2);
      const pub = (await RawClient.connect(first.port, { clientId: 'eo-pub' })).client;
      const publish2 = async (payload: string, pid: number): Promise<void> => {
        pub.publish('eo/t', payload, 2, false, pid);
        await expectPacket(pub, 'pubrec');
        pub.send({ type: 'pubrel', packetId: pid });
        await expectPacket(pub, 'pubcomp');
      };
      // three complete flows first, so the ids still open at the crash are not the ones a
      // restarted broker would hand out first
      for (let i = 1; i <= 3; i++) {
        await publish2(`warm${i}`, i);
        const p = await expectPacket(sub, 'publish');
        rx.onPublish(p);
        sub.send({ type: 'pubrec', packetId: p.packetId as number });
        rx.onPubrel((await expectPacket(sub, 'pubrel')).packetId);
        sub.send({ type: 'pubcomp', packetId: p.packetId as number });
      }
      // "one": received, no PUBREC
      await publish2('one', 10);
      const one = await expectPacket(sub, 'publish');
      rx.onPublish(one);
      expect(one.dup).toBe(false);
      // "two": PUBREC-ed, PUBREL received but not answered (the PUBCOMP is lost with the crash)
      await publish2('two', 11);
      const two = await expectPacket(sub, 'publish');
      rx.onPublish(two);
      sub.send({ type: 'pubrec', packetId: two.packetId as number });
      expect((await expectPacket(sub, 'pubrel')).packetId).toBe(two.packetId);
      // "three": QoS 1, no PUBACK
      pub.publish('eo/t', 'three', 1, false, 12);
      await expectPacket(pub, 'puback');
      const three = await expectPacket(sub, 'publish');
      expect(three.qos).toBe(1);
      expect(new Set([one.packetId, two.packetId, three.packetId]).size).toBe(3);
      expect(one.packetId).toBeGreaterThan(3);

      child.kill('SIGKILL');
      await Promise.all([sub.closed, pub.closed]);

      const second = await spawnBroker(dir);
      child = second.child;
      const back = await RawClient.connect(second.port, { clientId: 'eo-sub', clean: false });
      expect(back.connack.sessionPresent).toBe(true);
      const c = back.client;
      const seen = new Map<string, { pid: number; dup: boolean }>();
      let pubrelFor = -1;
      // three packets come back: "one" and "three" as PUBLISH, "two" as PUBREL
      for (let i = 0; i < 3; i++) {
        const p = (await c.next(5000)) as Packet;
        if (p.type === 'publish') {
          seen.set(text(p), { pid: p.packetId as number, dup: p.dup });
          if (p.qos === 2) {
            rx.onPublish(p);
            c.send({ type: 'pubrec', packetId: p.packetId as number });
          } else c.send({ type: 'puback', packetId: p.packetId as number });
        } else if (p.type === 'pubrel') {
          pubrelFor = p.packetId;
          rx.onPubrel(p.packetId);
          c.send({ type: 'pubcomp', packetId: p.packetId });
        } else throw new Error(`unexpected ${p.type}`);
      }
      expect(seen.get('one')).toEqual({ pid: one.packetId, dup: true });
      expect(seen.get('three')).toEqual({ pid: three.packetId, dup: true });
      expect(pubrelFor).toBe(two.packetId);
      // finish the flows of the re-sent ones
      {
        const rel = await expectPacket(c, 'pubrel');
        rx.onPubrel(rel.packetId);
        c.send({ type: 'pubcomp', packetId: rel.packetId });
      }
      expect(await c.silent(300)).toBe(true);
      // at the application level every QoS 2 message was delivered exactly once
      expect(rx.delivered.sort()).toEqual(['one', 'two', 'warm1', 'warm2', 'warm3']);
      c.close();
    } finally {
      child?.kill('SIGKILL');
    }
  }, 30_000);
});

describe('a will waiting out its will delay, across kill -9', () => {
  it('is sent by the restarted broker when its delay ends', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'broker-lite-will-'));
    dirs.push(dir);
    let child: ChildProcess | null = null;
    try {
      const first = await spawnBroker(dir);
      child = first.child;
      const watcher = (await RawClient.connect(first.port, { clientId: 'will-watch', clean: false })).client;
      await watcher.subscribe('wd/#', 1);
      await watcher.disconnect();
      const dying = (
        await RawClient.connect(first.port, {
          clientId: 'will-dying',
          protocolVersion: 5,
          properties: { sessionExpiryInterval: 60 },
          will: {
            topic: 'wd/gone',
            payload: Buffer.from('bye'),
            qos: 1,
            retain: false,
            properties: { willDelayInterval: 2 },
          },
        })
      ).client;
      dying.close(); // no DISCONNECT: the will is due in 2 s
      await dying.closed;
      // the will's record reaches the log within a group commit; watch the file for it
      const file = path.join(dir, 'broker-lite.db');
      const until = Date.now() + 3000;
      while (!fs.readFileSync(file).includes('wd/gone') && Date.now() < until)
        await new Promise((r) => setTimeout(r, 10));
      expect(fs.readFileSync(file).includes('wd/gone')).toBe(true);
      child.kill('SIGKILL');
      await new Promise((r) => child?.once('exit', r));

      const second = await spawnBroker(dir);
      child = second.child;
      const back = await RawClient.connect(second.port, { clientId: 'will-watch', clean: false });
      const p = await back.client.expect('publish', 5000);
      expect(p.topic).toBe('wd/gone');
      expect(text(p)).toBe('bye');
      back.client.close();
    } finally {
      child?.kill('SIGKILL');
    }
  }, 30_000);
});
