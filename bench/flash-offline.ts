/**
 * Issue 18.4: what broker-lite writes per reading when the persistent subscriber is offline, so
 * that every reading is stored (the flash area's chains keep it online). broker-lite in this
 * process; a persistent MQTT 5 subscriber subscribes to `demo/#` and leaves; a persistent
 * publisher sends the Pi chain's messages (its topics, content type, `msg-id` user property and
 * a 122-byte JSON payload) in frames of 4 at 1, 10 and 100 readings/s, with
 * `persistence_commit_window` 0, 50 and 1000. Bytes dirtied: this process's /proc/self/io
 * write_bytes (nothing else here writes); record bytes and fsyncs: the persistence's counters.
 * Run: `node --conditions=mqtt-edge-source --import tsx bench/flash-offline.ts` (about 2 minutes).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readingPublish } from '../packages/broker-lite/test/helpers/pi-reading.ts';
import { RawClient, startBroker } from '../packages/broker-lite/test/helpers/raw-client.ts';

const writeBytes = () => Number(/write_bytes: (\d+)/.exec(fs.readFileSync('/proc/self/io', 'utf8'))?.[1]);
const v5 = { protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 3600 } };

for (const rate of [1, 10, 100]) {
  for (const windowMs of [0, 50, 1000]) {
    const seconds = rate === 1 ? 24 : 10;
    // a real disk, not a tmpfs: /var/tmp
    const dir = fs.mkdtempSync(path.join(fs.existsSync('/var/tmp') ? '/var/tmp' : os.tmpdir(), 'flash-off-'));
    const tb = await startBroker({
      persistenceDir: dir,
      persistenceCommitWindowMs: windowMs,
      autosaveIntervalSeconds: 0,
    });
    try {
      const sub = (await RawClient.connect(tb.port, { clientId: 'bench-subscriber', ...v5 })).client;
      await sub.subscribe('demo/#', 1);
      await sub.disconnect();
      const pub = (await RawClient.connect(tb.port, { clientId: 'agent', ...v5 })).client;
      const p = tb.broker.persist;
      if (p === null) throw new Error('persistence off');
      while (p.unsynced) await new Promise((r) => setTimeout(r, 5));
      const w0 = writeBytes();
      const s0 = p.syncs;
      const b0 = p.writtenBytes;
      let n = 0;
      let pid = 0;
      const t0 = Date.now();
      while (Date.now() - t0 < seconds * 1000) {
        for (let k = 0; k < 4; k++) {
          pid = (pid % 65535) + 1;
          pub.send(readingPublish(n, pid));
          n++;
        }
        await new Promise((r) => setTimeout(r, 4000 / rate));
      }
      await new Promise((r) => setTimeout(r, windowMs + 200));
      console.log(
        JSON.stringify({
          rate,
          windowMs,
          readings: n,
          bytesPerReading: Math.round((writeBytes() - w0) / n),
          recordBytesPerReading: Math.round((p.writtenBytes - b0) / n),
          fsyncsPerSecond: Number(((p.syncs - s0) / seconds).toFixed(2)),
        }),
      );
      pub.close();
    } finally {
      await tb.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}
