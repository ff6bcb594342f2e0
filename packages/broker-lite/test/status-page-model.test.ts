/**
 * Issue 14.2: what the status page makes of the topics it reads (unit tests of its DOM-free
 * parts: the model and the chart path). The browser tests drive the whole page.
 */
import { describe, expect, it } from 'vitest';
import { sparkPath } from '../status-page/app/chart.ts';
import { CHART_MIN_SPAN_MS, chartStart, Model, Series, unitText } from '../status-page/app/model.ts';

const enc = (s: string) => new TextEncoder().encode(s);

describe('issue 14.2: the status page model', () => {
  it('issue 14.2: broker rates come from two $SYS rounds in the broker uptime; a counter not re-sent did not move', () => {
    const m = new Model();
    m.message('$SYS/broker/uptime', enc('10 seconds'), 0);
    m.message('$SYS/broker/publish/messages/received', enc('100'), 0);
    expect(m.rate('publish/messages/received')).toBeUndefined();
    m.message('$SYS/broker/uptime', enc('12 seconds'), 0);
    m.message('$SYS/broker/publish/messages/received', enc('160'), 0);
    expect(m.rate('publish/messages/received')).toBe(30);
    // The next round has no new value for it: unchanged, so 0 per second.
    m.message('$SYS/broker/uptime', enc('14 seconds'), 0);
    expect(m.rate('publish/messages/received')).toBe(0);
  });

  it('issue 14.2: bridges from $SYS/broker/connection/NAME/...', () => {
    const m = new Model();
    m.message('$SYS/broker/connection/cloud/state', enc('1'), 0);
    m.message('$SYS/broker/connection/cloud/bridge_state', enc('connected'), 0);
    m.message('$SYS/broker/connection/cloud/messages/queued', enc('7'), 0);
    const b = m.bridges.get('cloud');
    expect(b?.values.get('state')).toBe('1');
    expect(b?.values.get('messages/queued')).toBe('7');
    expect(m.broker.size).toBe(0);
  });

  it('issue 14.2: an agent names its prefix; devices, readings with units, offline, health per port', () => {
    const m = new Model();
    const prefixes: string[] = [];
    m.onPrefix = (p) => prefixes.push(p);
    m.message('site/_agent/gw/status', enc('online'), 0);
    expect(prefixes).toEqual(['site']);
    m.message('site/_agent/gw/status', enc('online'), 0);
    expect(prefixes).toEqual(['site']);
    expect(m.message('other/kitchen/temp', enc('{"value":1}'), 0)).toBe(false);
    m.message('site/kitchen/status', enc('online'), 0);
    for (let i = 0; i < 5; i++)
      m.message(
        'site/kitchen/temp',
        enc(
          JSON.stringify({
            id: `kitchen:1:${i}:0`,
            device: 'kitchen',
            sensor: 'temp',
            value: 20 + i,
            unit: 'Cel',
          }),
        ),
        1000 * (i + 1),
      );
    const d = m.devices.get('site/kitchen');
    expect(d?.online).toBe(true);
    const c = d?.channels.get('temp');
    expect(c?.value).toBe(24);
    expect(unitText(c?.unit)).toBe('°C');
    expect(c?.series.length).toBe(5);
    // Four intervals in the 4 s the page has seen of it.
    expect(m.readingRate(d!, 5000)).toBe(1);
    expect(m.readingRate(d!, 2500)).toBeUndefined();
    m.message('site/kitchen/status', enc('offline'), 5500);
    expect(d?.online).toBe(false);
    m.message(
      'site/_agent/gw/health',
      enc(
        JSON.stringify({
          queue: { count: 3 },
          ports: [{ name: 'p0', device: 'kitchen', counters: { framingErrors: 2 } }],
        }),
      ),
      6000,
    );
    expect(m.agents.get('site/gw')?.health?.queue?.count).toBe(3);
    expect(d?.agent).toBe('gw');
    expect(d?.framingErrors).toBe(2);
    // Commands and their replies, text that is not JSON, JSON without a value: not readings.
    expect(m.message('site/kitchen/cmd/ping', enc('{"value":1}'), 0)).toBe(false);
    expect(m.message('site/kitchen/temp', enc('garbage'), 0)).toBe(false);
    expect(m.message('site/kitchen/temp', enc('{"v":1}'), 0)).toBe(false);
    expect(m.readings).toBe(5);
  });

  it('issue 14.2: a series keeps its last points; the chart spans at least a minute, then the window', () => {
    const s = new Series(4);
    for (let i = 0; i < 6; i++) s.push(i, i * 10);
    expect(s.since(0)).toEqual([
      [2, 20],
      [3, 30],
      [4, 40],
      [5, 50],
    ]);
    expect(chartStart(s, 10_000)).toBe(10_000 - CHART_MIN_SPAN_MS);
    const p = sparkPath(
      [
        [0, 0],
        [50, 10],
        [100, 5],
      ],
      0,
      100,
      200,
      22,
    );
    expect(p.d).toBe('M0.0 21.0L100.0 1.0L200.0 11.0');
    expect([p.min, p.max]).toEqual([0, 10]);
    expect(sparkPath([[0, 1]], 0, 100, 200, 22).d).toBe('');
  });
});
