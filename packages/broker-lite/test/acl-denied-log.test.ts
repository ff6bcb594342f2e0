/**
 * Issue 13: a publish the ACL denies is logged, in Mosquitto's words ("Denied PUBLISH from ..."),
 * at notice (one of the default log types; Mosquitto says it at debug only, so a default broker
 * was silent about it), one line per client per interval however many are denied, with the count
 * of those not logged one by one in the next line or when the client goes.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AclFile } from '../src/acl.ts';
import { DEFAULT_LOG_TYPES } from '../src/log.ts';
import { RawClient, startBroker, type TestBroker } from './helpers/raw-client.ts';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function aclBroker(): Promise<TestBroker> {
  const b = await startBroker({
    accessControl: AclFile.parse('topic readwrite open/#\n', '/etc/mosquitto/acl'),
  });
  cleanups.push(() => b.close());
  return b;
}

const denials = (b: TestBroker) => b.logs.filter((l) => /^Denied /.test(l.message));

describe('issue 13: denied publishes are logged', () => {
  it('issue 13: a flood of denied publishes is one notice line per client, with the count when the client goes', async () => {
    expect(DEFAULT_LOG_TYPES).toContain('notice');
    const b = await aclBroker();
    const { client: a } = await RawClient.connect(b.port, { clientId: 'flooder', keepalive: 0 });
    for (let i = 1; i <= 1000; i++) a.publish('closed/x', 'hello', 1, false, i);
    // The last PUBACK (3.1.1: acknowledged and dropped, as Mosquitto does) means all were handled.
    for (let i = 1; i <= 1000; i++) await a.expect('puback');
    const { client: c } = await RawClient.connect(b.port, { clientId: 'other', keepalive: 0 });
    c.publish('closed/y', 'hi', 0, true);
    c.publish('open/ok', 'allowed', 0);
    await c.disconnect();
    expect(denials(b)).toEqual([
      {
        level: 'notice',
        message: "Denied PUBLISH from flooder (d0, q1, r0, m1, 'closed/x', ... (5 bytes))",
        fields: { clientId: 'flooder', username: undefined, topic: 'closed/x' },
      },
      {
        level: 'notice',
        message: "Denied PUBLISH from other (d0, q0, r1, m0, 'closed/y', ... (2 bytes))",
        fields: { clientId: 'other', username: undefined, topic: 'closed/y' },
      },
    ]);
    await a.disconnect();
    await new Promise((r) => setImmediate(r));
    expect(denials(b).at(-1)).toEqual({
      level: 'notice',
      message: 'Denied 999 more PUBLISH from flooder, not logged one by one',
      fields: { clientId: 'flooder', username: undefined, denied: 999 },
    });
  });

  it('issue 13: after the interval the next denial is logged again, with the count since the last line', async () => {
    const b = await aclBroker();
    const { client: a } = await RawClient.connect(b.port, { clientId: 'again', keepalive: 0 });
    for (let i = 1; i <= 3; i++) a.publish('closed/x', 'x', 1, false, i);
    for (let i = 1; i <= 3; i++) await a.expect('puback');
    const now = Date.now();
    vi.spyOn(Date, 'now').mockImplementation(() => now + 11_000);
    a.publish('closed/z', 'zz', 1, false, 4);
    await a.expect('puback');
    expect(denials(b).map((l) => l.message)).toEqual([
      "Denied PUBLISH from again (d0, q1, r0, m1, 'closed/x', ... (1 bytes))",
      "Denied PUBLISH from again (d0, q1, r0, m4, 'closed/z', ... (2 bytes)); 2 more denied since the last such line",
    ]);
    vi.restoreAllMocks();
    await a.disconnect();
    expect(denials(b)).toHaveLength(2);
  });
});
