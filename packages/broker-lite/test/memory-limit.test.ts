/**
 * Issue 12.9b: memory_limit, as in Mosquitto: while the broker's memory (its RSS, sampled every
 * 100 ms) is over the limit, incoming messages are refused: MQTT 5 QoS 1/2 with PUBACK/PUBREC
 * 0x97 (quota exceeded), QoS 0 dropped and counted, 3.1.1 QoS 1/2 publishers disconnected (as
 * Mosquitto does: a 3.1.1 PUBACK cannot refuse, and the client keeps the message to re-send).
 * Reloaded on SIGHUP, as in Mosquitto.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config.ts';
import { buildBrokerOptions } from '../src/config-build.ts';
import { BrokerProcess } from './helpers/broker-process.ts';
import { RawClient } from './helpers/raw-client.ts';

const MiB = 1024 * 1024;

/** Rewrites the broker's config with `extra` and reloads it (SIGHUP), waiting for the reload line. */
async function reload(bp: BrokerProcess, extra: string): Promise<void> {
  const from = bp.lines.length;
  writeFileSync(join(bp.dir, 'broker.conf'), `${bp.baseConf}${extra}\n`);
  bp.child.kill('SIGHUP');
  await bp.waitFor((l) => l.msg === 'reloaded password and ACL files' && bp.lines.indexOf(l) >= from);
}

describe('issue 12.9b: memory_limit', () => {
  it('is parsed (bytes, 0 = none) and reaches the broker; no longer ignored with a warning', async () => {
    const cfg = parseConfig(
      'listener 0 127.0.0.1\nallow_anonymous true\nmemory_limit 1048576\n',
      '/tmp/x.conf',
    );
    expect(cfg.memoryLimit).toBe(MiB);
    expect(cfg.warnings.filter((w) => w.key === 'memory_limit')).toEqual([]);
    const { options } = await buildBrokerOptions(cfg, { log() {} });
    expect(options.memoryLimit).toBe(MiB);
    expect(() => parseConfig('memory_limit -1\n', '/tmp/x.conf')).toThrow(/out of range/);
  });

  it('a real broker over a small limit refuses messages (5.0 0x97, QoS 0 dropped, 3.1.1 closed), serves the rest, and recovers', async () => {
    // 1 MB: far below what any Node.js process uses, so the broker is over it from the start
    const bp = await BrokerProcess.startText('memory_limit 1000000');
    try {
      await bp.waitFor((l) => /memory_limit exceeded/.test(String(l.msg)));
      const sub = (await RawClient.connect(bp.port, { clientId: 'sub', protocolVersion: 5 })).client;
      sub.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'm/#', qos: 2 }] });
      expect((await sub.expect('suback')).reasonCodes).toEqual([2]);

      const pub = (await RawClient.connect(bp.port, { clientId: 'pub5', protocolVersion: 5 })).client;
      pub.publish('m/q1', 'one', 1, false, 1);
      expect(await pub.expect('puback')).toMatchObject({ packetId: 1, reasonCode: 0x97 });
      pub.publish('m/q2', 'two', 2, true, 2);
      expect(await pub.expect('pubrec')).toMatchObject({ packetId: 2, reasonCode: 0x97 });
      pub.publish('m/q0', 'zero', 0);
      // a PINGREQ after the QoS 0 message: its answer comes after that message was handled
      pub.send({ type: 'pingreq' });
      await pub.expect('pingresp');
      expect(await sub.silent(300)).toBe(true);

      const old = (await RawClient.connect(bp.port, { clientId: 'pub311' })).client;
      old.publish('m/q1', 'one', 1, false, 3);
      await old.closed;
      expect(old.isClosed).toBe(true);
      await bp.waitFor(
        (l) => l.msg === 'client disconnected: memory_limit exceeded' && l.clientId === 'pub311',
      );

      // SIGHUP with no limit: accepted again, and said so in the log
      await reload(bp, 'memory_limit 0');
      await bp.waitFor((l) => /accepting messages again/.test(String(l.msg)));
      pub.publish('m/q1', 'back', 1, false, 4);
      expect(await pub.expect('puback')).toMatchObject({ packetId: 4, reasonCode: 0 });
      const m = await sub.expect('publish');
      expect(Buffer.from(m.payload).toString()).toBe('back');
      pub.close();
      sub.close();
    } finally {
      expect((await bp.stop()).code).toBe(0);
    }
  });

  it('measures the real process: retained messages that grow RSS past the limit are refused from then on', async () => {
    const bp = await BrokerProcess.startText('');
    try {
      const limit = bp.memory().rss + 64 * MiB;
      await reload(bp, `memory_limit ${limit}`);
      const pub = (await RawClient.connect(bp.port, { clientId: 'filler', protocolVersion: 5 })).client;
      const payload = new Uint8Array(MiB).fill(0x61);
      let accepted = 0;
      let refused = false;
      for (let i = 1; i <= 400 && !refused; i++) {
        pub.publish(`fill/${i}`, payload, 1, true, i);
        const ack = await pub.expect('puback', 10_000);
        if (ack.reasonCode === 0x97) refused = true;
        else accepted++;
      }
      expect(refused).toBe(true);
      // 64 MB of headroom took dozens of 1 MB messages (retained: each one is kept; each also
      // leaves socket buffers as garbage until a GC, so not 64 of them)
      expect(accepted).toBeGreaterThanOrEqual(16);
      // the broker switched when a sample of its RSS was over the limit, and said so
      const over = await bp.waitFor((l) => /memory_limit exceeded/.test(String(l.msg)));
      expect(over.level).toBe('warning');
      expect(Number(over.memoryLimit)).toBe(limit);
      expect(Number(over.rss)).toBeGreaterThan(limit);
      // ... and it is over now, the retained messages being held
      expect(bp.memory().rss).toBeGreaterThan(limit - 16 * MiB);
      pub.close();
    } finally {
      expect((await bp.stop()).code).toBe(0);
    }
  });
});
