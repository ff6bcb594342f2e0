/**
 * Issue 14.3: the exposition writer and the endpoint's HTTP handling, in process. The end-to-end
 * scrape of a running agent (counters moving, promtool) is test/e2e-agent-metrics.test.ts.
 */
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../src/log.ts';
import { CONTENT_TYPE, Exposition, MetricsServer } from '../src/metrics.ts';

describe('issue 14.3: Prometheus text exposition', () => {
  it('issue 14.3: label values are escaped (backslash, quote, newline), HELP too; values as Prometheus writes them', () => {
    const e = new Exposition()
      .help('x_total', 'counter', 'a \\ help\nline')
      .sample(1, { port: 'a"b\\c\nd' })
      .sample(Number.NaN, { port: 'p' })
      .one('y', 'gauge', 'inf', Number.POSITIVE_INFINITY)
      .one('z', 'gauge', 'small', 1e-7);
    expect(e.toString()).toBe(
      [
        '# HELP x_total a \\\\ help\\nline',
        '# TYPE x_total counter',
        'x_total{port="a\\"b\\\\c\\nd"} 1',
        'x_total{port="p"} NaN',
        '# HELP y inf',
        '# TYPE y gauge',
        'y +Inf',
        '# HELP z small',
        '# TYPE z gauge',
        'z 1e-7',
        '',
      ].join('\n'),
    );
  });
});

describe('issue 14.3: the /metrics endpoint', () => {
  it('issue 14.3: GET and HEAD /metrics; other paths 404, other methods 405; oversized headers refused; a failing render is a 500', async () => {
    let fail = false;
    const server = await MetricsServer.listen(
      { host: '127.0.0.1', port: 0 },
      () => {
        if (fail) throw new Error('boom');
        return 'up 1\n';
      },
      silentLogger,
    );
    expect(server).toBeDefined();
    const base = `http://127.0.0.1:${server!.port}`;
    try {
      const r = await fetch(`${base}/metrics`);
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toBe(CONTENT_TYPE);
      expect(await r.text()).toBe('up 1\n');
      const head = await fetch(`${base}/metrics`, { method: 'HEAD' });
      expect([head.status, await head.text()]).toEqual([200, '']);
      expect((await fetch(`${base}/nope`)).status).toBe(404);
      expect((await fetch(`${base}/metrics`, { method: 'DELETE' })).status).toBe(405);
      expect((await fetch(`${base}/metrics`, { headers: { 'x-big': 'a'.repeat(20_000) } })).status).toBe(431);
      fail = true;
      expect((await fetch(`${base}/metrics`)).status).toBe(500);
      fail = false;
      // Garbage instead of HTTP: the connection is closed, the server goes on.
      await new Promise<void>((resolve) => {
        const s = net.connect(server!.port, '127.0.0.1', () => s.end('\x00\xff not http\r\n\r\n'));
        s.on('close', () => resolve());
        s.on('error', () => resolve());
        s.resume();
      });
      expect((await fetch(`${base}/metrics`)).status).toBe(200);
    } finally {
      await server!.close();
    }
  });

  it('issue 14.3: an address in use is logged, not fatal', async () => {
    const first = await MetricsServer.listen({ host: '127.0.0.1', port: 0 }, () => '', silentLogger);
    const lines: string[] = [];
    const second = await MetricsServer.listen({ host: '127.0.0.1', port: first!.port }, () => '', {
      ...silentLogger,
      log: (_l, msg) => {
        lines.push(msg);
      },
    });
    expect(second).toBeUndefined();
    expect(lines).toContain('metrics-listen-failed');
    await first!.close();
  });
});
