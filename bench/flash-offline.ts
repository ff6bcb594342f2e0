/**
 * Issue 18.4: what broker-lite writes per reading when the persistent subscriber is offline, so
 * that every reading is stored (the flash area's chains keep it online). broker-lite in this
 * process; a persistent MQTT 5 subscriber subscribes to `demo/#` and leaves; a persistent
 * publisher sends the Pi chain's messages (its topics, content type, `msg-id` user property and
 * a 122-byte JSON payload) in frames of 4 at 1, 10 and 100 readings/s, under several
 * `persistence_commit_window`s, and counts its PUBACKs: the delay of each (what the window costs
 * the publisher) and the most unacknowledged at once (what Receive Maximum / the broker's
 * `max_inflight_messages`, 100 by default, must allow; set to 65,535 here). Bytes dirtied: this process's
 * /proc/self/io write_bytes (this process also dirties a page now and then by itself: about
 * 4-12 KiB a minute idle, which shows in rows of long windows); the pages the log's appends
 * touched (`persistence_written_pages_total`) x 4 KiB, without that; record bytes and fsyncs:
 * the persistence's counters. Each row runs at least three windows.
 * Run: `node --conditions=mqtt-edge-source --import tsx bench/flash-offline.ts [rate:windowMs ...]`
 * (the default set takes about 15 minutes, 11 of them the 128 s window; `100:640 10:6400` two rows).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readingPublish } from '../packages/broker-lite/test/helpers/pi-reading.ts';
import { RawClient, startBroker } from '../packages/broker-lite/test/helpers/raw-client.ts';

const writeBytes = () => Number(/write_bytes: (\d+)/.exec(fs.readFileSync('/proc/self/io', 'utf8'))?.[1]);
const v5 = { protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 3600 } };

const DEFAULT_ROWS = [
  '1:0',
  '1:50',
  '1:128000',
  '10:0',
  '10:50',
  '10:1000',
  '10:6400',
  '100:0',
  '100:50',
  '100:640',
  '100:1000',
];
const rows = (process.argv.length > 2 ? process.argv.slice(2) : DEFAULT_ROWS).map((r) =>
  r.split(':').map(Number),
);

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];

for (const [rate, windowMs] of rows) {
  const seconds = Math.max(rate === 1 ? 24 : 10, (3 * windowMs) / 1000);
  // a real disk, not a tmpfs: /var/tmp
  const dir = fs.mkdtempSync(path.join(fs.existsSync('/var/tmp') ? '/var/tmp' : os.tmpdir(), 'flash-off-'));
  const tb = await startBroker({
    persistenceDir: dir,
    persistenceCommitWindowMs: windowMs,
    autosaveIntervalSeconds: 0,
    // The publisher may have a window's readings unacknowledged: rate x window can pass the
    // default Receive Maximum (100, from max_inflight_messages); maxUnacked says what it needs.
    receiveMaximum: 65_535,
  });
  try {
    const sub = (await RawClient.connect(tb.port, { clientId: 'bench-subscriber', ...v5 })).client;
    // a stored session's SUBACK waits for the commit of its subscription: up to the window
    sub.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'demo/#', qos: 1 }] });
    await sub.expect('suback', windowMs + 5000);
    await sub.disconnect();
    const pub = (await RawClient.connect(tb.port, { clientId: 'agent', ...v5 })).client;
    // a client keeps its connection alive while it waits (the broker closes one silent 1.5 x 60 s)
    const ping = setInterval(() => pub.send({ type: 'pingreq' }), 20_000).unref();
    const p = tb.broker.persist;
    if (p === null) throw new Error('persistence off');
    while (p.unsynced) await new Promise((r) => setTimeout(r, 5));
    const w0 = writeBytes();
    const s0 = p.syncs;
    const b0 = p.writtenBytes;
    const g0 = p.writtenPages;
    const sentAt = new Map<number, number>();
    const delays: number[] = [];
    let maxUnacked = 0;
    let sending = true;
    // PUBACKs as they come: each one's delay, until every reading sent is acknowledged
    const acks = (async () => {
      while (sending || sentAt.size > 0) {
        const pk = await pub.next(windowMs + 10_000);
        if (pk === null) throw new Error(`connection closed with ${sentAt.size} unacknowledged`);
        if (pk.type !== 'puback') continue; // PINGRESPs (one wakes this loop at the end)
        const t = sentAt.get(pk.packetId);
        if (t === undefined) throw new Error(`PUBACK for unknown id ${pk.packetId}`);
        if ((pk.reasonCode ?? 0) !== 0) throw new Error(`PUBACK reason ${pk.reasonCode}`);
        delays.push(performance.now() - t);
        sentAt.delete(pk.packetId);
      }
    })();
    let n = 0;
    let pid = 0;
    const t0 = Date.now();
    while (Date.now() - t0 < seconds * 1000) {
      for (let k = 0; k < 4; k++) {
        pid = (pid % 65535) + 1;
        sentAt.set(pid, performance.now());
        pub.send(readingPublish(n, pid));
        n++;
      }
      if (sentAt.size > maxUnacked) maxUnacked = sentAt.size;
      await new Promise((r) => setTimeout(r, 4000 / rate));
    }
    sending = false;
    pub.send({ type: 'pingreq' });
    await acks;
    clearInterval(ping);
    const elapsed = (Date.now() - t0) / 1000;
    delays.sort((a, b) => a - b);
    console.log(
      JSON.stringify({
        rate,
        windowMs,
        readings: n,
        readingsPerCommit: Number((n / Math.max(1, p.syncs - s0)).toFixed(1)),
        bytesPerReading: Math.round((writeBytes() - w0) / n),
        recordBytesPerReading: Math.round((p.writtenBytes - b0) / n),
        // the pages the log's appends touched, x 4 KiB: the same without the process's other writes
        pageBytesPerReading: Math.round(((p.writtenPages - g0) * 4096) / n),
        fsyncsPerSecond: Number(((p.syncs - s0) / elapsed).toFixed(2)),
        pubackMs: { p50: Math.round(pct(delays, 0.5)), p99: Math.round(pct(delays, 0.99)) },
        maxUnacked,
      }),
    );
    pub.close();
  } finally {
    await tb.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
