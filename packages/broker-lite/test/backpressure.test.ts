import { describe, expect, it } from 'vitest';
import { RawClient, startBroker, text } from './helpers/raw-client.ts';

describe('no silent loss', () => {
  it('a full subscriber queue pauses the QoS 1 publisher instead of dropping; all arrive once it reads', async () => {
    const tb = await startBroker({ maxQueuedMessages: 50, maxInflightMessages: 5 });
    try {
      const sub = (await RawClient.connect(tb.port, { clientId: 'slow-sub' })).client;
      await sub.subscribe('bp/#', 1);
      const pub = (await RawClient.connect(tb.port, { clientId: 'fast-pub' })).client;
      const N = 400;
      let acked = 0;
      // The publisher sends everything at once; the subscriber does not ack yet.
      for (let i = 1; i <= N; i++) pub.publish('bp/t', String(i), 1, false, i);
      const session = tb.broker.sessions.get('slow-sub');
      const deadline = Date.now() + 5000;
      while (Date.now() < deadline && tb.broker.stats().publisherPauses === 0)
        await new Promise((r) => setTimeout(r, 20));
      expect(tb.broker.stats().publisherPauses).toBeGreaterThan(0);
      // bounded: the queue stays near its limit (a chunk read before the pause may overshoot)
      expect(session?.queueLength ?? 0).toBeLessThan(N);
      expect(tb.broker.stats().messagesDropped).toBe(0);
      // now the subscriber reads and acks everything
      const got: number[] = [];
      while (got.length < N) {
        const p = await sub.next(5000);
        if (p === null) throw new Error('closed');
        if (p.type !== 'publish') continue;
        got.push(Number(text(p)));
        sub.send({ type: 'puback', packetId: p.packetId as number });
      }
      expect(got).toEqual(Array.from({ length: N }, (_, i) => i + 1));
      while (acked < N) {
        const p = await pub.expect('puback', 5000);
        expect(p.packetId).toBe(acked + 1);
        acked++;
      }
      expect(tb.broker.stats().messagesDropped).toBe(0);
      sub.close();
      pub.close();
    } finally {
      await tb.close();
    }
  });

  it('QoS 0 to a subscriber that stopped reading: publisher slowed, broker memory bounded, nothing lost once it reads', async () => {
    const tb = await startBroker();
    try {
      const sub = (await RawClient.connect(tb.port, { clientId: 'stuck-sub' })).client;
      await sub.subscribe('flood/#', 0);
      sub.socket.pause(); // stops reading: the kernel buffers fill, then the broker's
      const pub = (await RawClient.connect(tb.port, { clientId: 'flooder' })).client;
      const payload = new Uint8Array(1024);
      const N = 20_000; // 20 MiB
      let i = 0;
      const writeMore = (): void => {
        while (i < N) {
          payload[0] = i & 0xff;
          pub.publish('flood/t', payload, 0);
          i++;
          if (pub.socket.writableLength > 1 << 20) {
            pub.socket.once('drain', writeMore);
            return;
          }
        }
      };
      writeMore();
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline && tb.broker.stats().publisherPauses === 0)
        await new Promise((r) => setTimeout(r, 20));
      expect(tb.broker.stats().publisherPauses).toBeGreaterThan(0);
      await new Promise((r) => setTimeout(r, 300));
      const conn = tb.broker.sessions.get('stuck-sub')?.conn;
      expect(conn).toBeTruthy();
      // what the broker holds for the stuck client stays bounded (hard limit 4 MiB plus one turn)
      expect(conn?.backlog ?? 0).toBeLessThan(6 * 1024 * 1024);
      expect(i).toBeLessThan(N); // the publisher was held back
      sub.socket.resume();
      let got = 0;
      while (got < N) {
        const p = await sub.next(10_000);
        if (p?.type === 'publish') got++;
      }
      expect(got).toBe(N);
      expect(tb.broker.stats().messagesDropped).toBe(0);
      sub.close();
      pub.close();
    } finally {
      await tb.close();
    }
  });

  it('an offline session past max_queued_messages drops what is over the bound, and counts and logs it', async () => {
    const tb = await startBroker({ maxQueuedMessages: 10 });
    try {
      const s = (await RawClient.connect(tb.port, { clientId: 'away', clean: false })).client;
      await s.subscribe('away/t', 1);
      await s.disconnect();
      const pub = (await RawClient.connect(tb.port, { clientId: 'away-pub' })).client;
      for (let i = 1; i <= 15; i++) pub.publish('away/t', String(i), 1, false, i);
      for (let i = 1; i <= 15; i++) await pub.expect('puback');
      expect(tb.broker.stats().messagesDropped).toBe(5);
      expect(
        tb.logs.some(
          (l) => l.message === 'message dropped' && l.fields?.reason === 'offline session queue full',
        ),
      ).toBe(true);
      const back = (await RawClient.connect(tb.port, { clientId: 'away', clean: false })).client;
      const got: string[] = [];
      for (let i = 0; i < 10; i++) {
        const p = await back.expect('publish');
        got.push(text(p));
        back.send({ type: 'puback', packetId: p.packetId as number });
      }
      expect(got).toEqual(['1', '2', '3', '4', '5', '6', '7', '8', '9', '10']);
      back.close();
      pub.close();
    } finally {
      await tb.close();
    }
  });
});

describe('QoS 0 memory bound', () => {
  it('past 4 MiB unsent to a client that does not read, QoS 0 is dropped, counted and logged', async () => {
    const { makeMessage } = await import('../src/message.ts');
    const tb = await startBroker();
    try {
      const sub = (await RawClient.connect(tb.port, { clientId: 'deaf' })).client;
      await sub.subscribe('big/#', 0);
      sub.socket.pause();
      const payload = new Uint8Array(512 * 1024);
      // The broker's own messages are not slowed down by pausing a publisher: only the bound holds.
      for (let i = 0; i < 40; i++) {
        tb.broker.publish(makeMessage('big/t', payload, 0, false, undefined, Date.now()));
        await new Promise((r) => setImmediate(r));
      }
      const dropped = tb.broker.stats().messagesDropped;
      expect(dropped).toBeGreaterThan(0);
      expect(dropped).toBeLessThan(40);
      expect(
        tb.logs.some((l) => l.message === 'message dropped' && String(l.fields?.reason).includes('QoS 0')),
      ).toBe(true);
      const conn = tb.broker.sessions.get('deaf')?.conn;
      expect(conn?.backlog ?? 0).toBeLessThan(4 * 1024 * 1024 + 2 * payload.length);
      sub.close();
    } finally {
      await tb.close();
    }
  });
});
