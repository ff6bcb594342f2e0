import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { RawClient, startBroker, type TestBroker, text } from './helpers/raw-client.ts';

const brokers: TestBroker[] = [];
const dirs: string[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const b of brokers.splice(0)) await b.close();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** From now on every fdatasync waits: the returned list holds one release per waiting call. */
function gateFdatasync(): Array<() => void> {
  const gated: Array<() => void> = [];
  const real = fs.fdatasync;
  vi.spyOn(fs, 'fdatasync').mockImplementation(((
    fd: number,
    cb: (err: NodeJS.ErrnoException | null) => void,
  ) => {
    gated.push(() => real(fd, cb));
  }) as typeof fs.fdatasync);
  return gated;
}

describe('output held until the group commit', () => {
  it('a persistent session gets a QoS 2 PUBLISH only once its packet id is on disk; others at once', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'broker-lite-hold-'));
    dirs.push(dir);
    const tb = await startBroker({ persistenceDir: dir });
    brokers.push(tb);
    const durable = (await RawClient.connect(tb.port, { clientId: 'hold-durable', clean: false })).client;
    await durable.subscribe('h/#', 2);
    const volatile = (await RawClient.connect(tb.port, { clientId: 'hold-volatile' })).client;
    await volatile.subscribe('h/#', 2);
    // from here every fdatasync waits for the gate
    const gated = gateFdatasync();
    const pub = (await RawClient.connect(tb.port, { clientId: 'hold-pub' })).client;
    pub.publish('h/1', 'one', 2, false, 1);
    const v = await volatile.expect('publish');
    expect(text(v)).toBe('one');
    // the commit is stuck: neither the durable subscriber's PUBLISH nor the publisher's PUBREC
    expect(await durable.silent(200)).toBe(true);
    expect(await pub.silent(0)).toBe(true);
    expect(gated.length).toBe(1);
    vi.restoreAllMocks();
    for (const go of gated.splice(0)) go();
    const d = await durable.expect('publish');
    expect(text(d)).toBe('one');
    expect((await pub.expect('pubrec')).packetId).toBe(1);
    durable.close();
    volatile.close();
    pub.close();
  });
});

describe('issue 18.4: SUBACK and UNSUBACK of a stored session wait for the commit', () => {
  it('with the default commit window, a persistent session is told of its subscription only once it is on disk', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'broker-lite-hold-sub-'));
    dirs.push(dir);
    const tb = await startBroker({ persistenceDir: dir });
    brokers.push(tb);
    const durable = (await RawClient.connect(tb.port, { clientId: 'hold-sub', clean: false })).client;
    const volatile = (await RawClient.connect(tb.port, { clientId: 'hold-sub-volatile' })).client;
    // from here every fdatasync waits for the gate
    const gated = gateFdatasync();
    // a session kept in memory only is answered at once
    expect(await volatile.subscribe('s/#', 1)).toEqual([1]);
    durable.send({ type: 'subscribe', packetId: 7, subscriptions: [{ topicFilter: 's/#', qos: 1 }] });
    // the commit (after the window) is stuck in its fdatasync: no SUBACK yet
    await vi.waitFor(() => expect(gated.length).toBe(1), { timeout: 2000, interval: 10 });
    expect(await durable.silent(100)).toBe(true);
    for (const go of gated.splice(0)) go();
    expect((await durable.expect('suback')).packetId).toBe(7);
    durable.send({ type: 'unsubscribe', packetId: 8, topicFilters: ['s/#'] });
    await vi.waitFor(() => expect(gated.length).toBe(1), { timeout: 2000, interval: 10 });
    expect(await durable.silent(100)).toBe(true);
    vi.restoreAllMocks();
    for (const go of gated.splice(0)) go();
    expect((await durable.expect('unsuback')).packetId).toBe(8);
    durable.close();
    volatile.close();
  });
});
