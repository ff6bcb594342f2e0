/**
 * Issue 14.2: Mosquitto's `http_dir` on websockets listeners, and the built-in status page
 * (`status_page true`) served the same way. Requests are written byte by byte over a real
 * socket (fetch and browsers normalise `..` away before sending), answered by a real broker.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config.ts';
import { buildBrokerOptions } from '../src/config-build.ts';
import { isInside, MAX_OPEN_FILES, parseTarget } from '../src/http-files.ts';
import { Broker } from '../src/index.ts';

interface Response {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** One raw HTTP/1.1 request (the target exactly as given); the whole response, the socket closed. */
function request(
  port: number,
  target: string,
  method = 'GET',
  headers: Record<string, string> = {},
): Promise<Response> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    s.on('data', (c) => chunks.push(c));
    s.on('error', reject);
    s.on('close', () => {
      const all = Buffer.concat(chunks);
      const end = all.indexOf('\r\n\r\n');
      if (end < 0) return reject(new Error(`no HTTP response: ${all.toString().slice(0, 80)}`));
      const lines = all.subarray(0, end).toString('latin1').split('\r\n');
      const h: Record<string, string> = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        h[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
      }
      resolve({ status: Number(lines[0].split(' ')[1]), headers: h, body: all.subarray(end + 4) });
    });
    let req = `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n`;
    for (const [k, v] of Object.entries(headers)) req += `${k}: ${v}\r\n`;
    s.write(`${req}\r\n`);
  });
}

const root = mkdtempSync(join(tmpdir(), 'bl-http-'));
const www = join(root, 'www');
const sibling = join(root, 'www2');
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('issue 14.2: http_dir', () => {
  let broker: Broker;
  let port: number;
  let mqttPort: number;
  beforeAll(async () => {
    mkdirSync(join(www, 'sub'), { recursive: true });
    mkdirSync(join(www, 'empty'), { recursive: true });
    mkdirSync(sibling);
    writeFileSync(join(www, 'index.html'), '<h1>home</h1>');
    writeFileSync(join(www, 'app.js'), 'console.log(1)');
    writeFileSync(join(www, 'style.css'), 'body{}');
    writeFileSync(join(www, 'data.bin'), Buffer.alloc(100_000, 7));
    writeFileSync(join(www, 'sub', 'index.html'), '<h1>sub</h1>');
    writeFileSync(join(www, 'a b.txt'), 'spaced');
    writeFileSync(join(www, '.htpasswd'), 'secret');
    writeFileSync(join(root, 'outside.txt'), 'outside');
    writeFileSync(join(sibling, 'secret.txt'), 'sibling secret');
    symlinkSync(join(root, 'outside.txt'), join(www, 'escape.txt'));
    symlinkSync(root, join(www, 'up'));
    symlinkSync(join(www, 'app.js'), join(www, 'inside-link.js'));
    broker = new Broker({
      listeners: [
        { port: 0, host: '127.0.0.1', protocol: 'websockets', httpDir: www },
        { port: 0, host: '127.0.0.1', protocol: 'mqtt' },
      ],
      sysInterval: 0,
    });
    await broker.listen();
    port = broker.addresses[0].port;
    mqttPort = broker.addresses[1].port;
  });
  afterAll(() => broker.close());

  it('issue 14.2: serves files with their content types, / as index.html, HEAD without a body', async () => {
    const home = await request(port, '/');
    expect(home.status).toBe(200);
    expect(home.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(home.body.toString()).toBe('<h1>home</h1>');
    const js = await request(port, '/app.js?v=3');
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(js.body.toString()).toBe('console.log(1)');
    expect((await request(port, '/style.css')).headers['content-type']).toBe('text/css; charset=utf-8');
    const bin = await request(port, '/data.bin');
    expect(bin.headers['content-type']).toBe('application/octet-stream');
    expect(bin.body.length).toBe(100_000);
    expect((await request(port, '/a%20b.txt')).body.toString()).toBe('spaced');
    expect((await request(port, '/sub/')).body.toString()).toBe('<h1>sub</h1>');
    const head = await request(port, '/app.js', 'HEAD');
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe('14');
    expect(head.body.length).toBe(0);
    expect((await request(port, '/inside-link.js')).body.toString()).toBe('console.log(1)');
  });

  it('issue 14.2: a directory without its slash is redirected to it, as in Mosquitto', async () => {
    const r = await request(port, '/sub');
    expect(r.status).toBe(302);
    expect(r.headers.location).toBe('/sub/');
    // The Location is rebuilt from checked segments: never another host.
    const r2 = await request(port, '//sub');
    expect(r2.status).toBe(302);
    expect(r2.headers.location).toBe('/sub/');
    expect((await request(port, '/empty/')).status).toBe(404);
  });

  it('issue 14.2: nothing outside the directory: .., encoded .., symlinks out, a sibling with the same prefix, hidden files', async () => {
    for (const target of [
      '/../outside.txt',
      '/sub/../../outside.txt',
      '/%2e%2e/outside.txt',
      '/%2E%2E/%2E%2E/etc/passwd',
      '/..%2foutside.txt',
      '/..%5coutside.txt',
      '/escape.txt',
      '/up/outside.txt',
      '/up/www2/secret.txt',
      '/../www2/secret.txt',
      '/.htpasswd',
      '/%00',
      '/app.js%00.html',
    ]) {
      const r = await request(port, target);
      expect([400, 404], target).toContain(r.status);
      expect(r.body.toString(), target).not.toMatch(/outside|secret/);
    }
    // absolute-form and garbage targets
    expect((await request(port, 'http://evil/app.js')).status).toBe(400);
    expect((await request(port, '/%zz')).status).toBe(400);
    expect((await request(port, `/${'a'.repeat(3000)}`)).status).toBe(414);
  });

  it('issue 14.2: GET and HEAD only (405 with Allow); the upgrade to MQTT still works on the same port', async () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS', 'TRACE']) {
      const r = await request(port, '/index.html', method, { 'Content-Length': '0' });
      expect(r.status, method).toBe(405);
      expect(r.headers.allow).toBe('GET, HEAD');
    }
    const c = await mqtt.connectAsync(`ws://127.0.0.1:${port}/mqtt`, {
      protocolVersion: 5,
      reconnectPeriod: 0,
    });
    await c.endAsync();
  });

  it('issue 14.2: a file not changed is answered 304 to its ETag', async () => {
    const r = await request(port, '/app.js');
    const etag = r.headers.etag;
    expect(etag).toBeTruthy();
    const again = await request(port, '/app.js', 'GET', { 'If-None-Match': etag });
    expect(again.status).toBe(304);
    expect(again.body.length).toBe(0);
  });

  it(`issue 14.2: at most ${MAX_OPEN_FILES} files are streamed at once; the broker serves MQTT meanwhile`, async () => {
    const big = join(www, 'big.bin');
    writeFileSync(big, Buffer.alloc(4 << 20, 1));
    // Clients that ask and never read: each response stalls with its file open.
    const sockets: net.Socket[] = [];
    for (let i = 0; i < MAX_OPEN_FILES + 8; i++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => {});
      s.pause();
      s.write('GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n');
      sockets.push(s);
    }
    // Every request reaches the server's open() before the next ones are refused.
    const deadline = Date.now() + 10_000;
    let refused: Response | undefined;
    while (Date.now() < deadline) {
      const r = await request(port, '/app.js');
      if (r.status === 503) {
        refused = r;
        break;
      }
      await new Promise((res) => setTimeout(res, 20));
    }
    expect(refused?.status).toBe(503);
    expect(refused?.headers['retry-after']).toBe('1');
    const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { reconnectPeriod: 0 });
    await c.endAsync();
    for (const s of sockets) s.destroy();
    // Their files are closed again: requests are served.
    const until = Date.now() + 5000;
    let ok = 0;
    while (Date.now() < until && ok !== 200) {
      ok = (await request(port, '/app.js')).status;
      if (ok !== 200) await new Promise((res) => setTimeout(res, 20));
    }
    expect(ok).toBe(200);
  });

  it('issue 14.2: a websockets listener without http_dir keeps answering 426', async () => {
    const b = new Broker({
      listeners: [{ port: 0, host: '127.0.0.1', protocol: 'websockets' }],
      sysInterval: 0,
    });
    await b.listen();
    try {
      expect((await request(b.addresses[0].port, '/')).status).toBe(426);
    } finally {
      await b.close();
    }
  });
});

describe('issue 14.2: the built-in status page (status_page true)', () => {
  let broker: Broker;
  let port: number;
  beforeAll(async () => {
    broker = new Broker({
      listeners: [{ port: 0, host: '127.0.0.1', protocol: 'websockets', statusPage: true }],
      sysInterval: 0,
    });
    await broker.listen();
    port = broker.addresses[0].port;
  });
  afterAll(() => broker.close());

  it('issue 14.2: /, app.js and app.css, gzipped when asked, with a strict CSP; nothing else', async () => {
    const home = await request(port, '/', 'GET', { 'Accept-Encoding': 'gzip, deflate' });
    expect(home.status).toBe(200);
    expect(home.headers['content-encoding']).toBe('gzip');
    const html = gunzipSync(home.body).toString();
    expect(html).toContain('<script src="app.js"');
    expect(home.headers['content-security-policy']).toContain("script-src 'self'");
    expect(home.headers['content-security-policy']).toContain("connect-src 'self'");
    const js = await request(port, '/app.js');
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(js.headers['content-encoding']).toBeUndefined();
    expect(js.body.toString()).toContain('$SYS/broker/#');
    expect((await request(port, '/app.css')).headers['content-type']).toBe('text/css; charset=utf-8');
    for (const t of ['/index.htm', '/../app.js', '/etc/passwd', '/.env'])
      expect((await request(port, t)).status).toBe(404);
    expect((await request(port, '/', 'POST', { 'Content-Length': '0' })).status).toBe(405);
    const again = await request(port, '/app.js', 'GET', { 'If-None-Match': js.headers.etag });
    expect(again.status).toBe(304);
  });
});

describe('issue 14.2: hostile HTTP before any login', () => {
  let broker: Broker;
  let port: number;
  beforeAll(async () => {
    broker = new Broker({
      listeners: [{ port: 0, host: '127.0.0.1', protocol: 'websockets', statusPage: true }],
      sysInterval: 0,
      connectTimeoutSeconds: 1,
    });
    await broker.listen();
    port = broker.addresses[0].port;
  });
  afterAll(() => broker.close());

  it('issue 14.2: 20,000 pipelined requests never read: the broker stops reading (memory bounded), and the socket goes at the connect timeout', async () => {
    const rss0 = process.memoryUsage().rss;
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    s.pause(); // never reads a response
    const one = Buffer.from('GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n');
    const burst = Buffer.concat(Array.from({ length: 1000 }, () => one));
    let written = 0;
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    const t0 = Date.now();
    for (let i = 0; i < 20 && !s.destroyed; i++) {
      s.write(burst);
      written += burst.length;
    }
    let rssMax = rss0;
    const sampler = setInterval(() => {
      rssMax = Math.max(rssMax, process.memoryUsage().rss);
    }, 20);
    // The server side lets go of it at the connect timeout (1 s here)...
    while (broker.pendingSockets.size > 0 && Date.now() - t0 < 5000)
      await new Promise((r) => setTimeout(r, 50));
    clearInterval(sampler);
    expect(broker.pendingSockets.size).toBe(0);
    expect(Date.now() - t0).toBeLessThan(3500);
    // ...and the client sees the end once it reads what it was sent.
    s.resume();
    await closed;
    // 20,000 responses of 61 KB would be 1.2 GB; Node's HTTP server pauses the socket instead.
    expect(rssMax - rss0).toBeLessThan(64 << 20);
    expect(written).toBeGreaterThan(0);
    expect((await request(port, '/app.css')).status).toBe(200);
  });

  it('issue 14.2: a request trickled a byte at a time is closed at the connect timeout', async () => {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    const t0 = Date.now();
    const text = 'GET /app.js HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'a'.repeat(1000);
    let i = 0;
    const drip = setInterval(() => {
      if (!s.destroyed && i < text.length) s.write(text[i++]);
    }, 50);
    await closed;
    clearInterval(drip);
    expect(Date.now() - t0).toBeLessThan(3500);
  });
});

describe('issue 14.2: config keys http_dir and status_page', () => {
  const FILE = join(root, 'mosquitto.conf');
  it('issue 14.2: http_dir per websockets listener, resolved from the file; ignored with a warning on an mqtt listener', async () => {
    const cfg = parseConfig(
      `listener 9001\nprotocol websockets\nhttp_dir www\nlistener 1883\nhttp_dir www\n`,
      FILE,
    );
    expect(cfg.listeners[0].httpDir).toBe(www);
    expect(cfg.warnings.map((w) => w.message).join('\n')).toMatch(/http_dir|not protocol websockets/);
    const { options } = await buildBrokerOptions(cfg, { log() {} });
    expect(options.listeners[0].httpDir).toBe(www);
    expect(options.listeners[1].httpDir).toBeUndefined();
  });

  it('issue 14.2: a missing http_dir is an error naming file:line at start-up', async () => {
    const cfg = parseConfig(`listener 9001\nprotocol websockets\nhttp_dir nowhere\n`, FILE);
    await expect(buildBrokerOptions(cfg, { log() {} })).rejects.toThrow(
      /mosquitto\.conf:1.*http_dir.*nowhere/,
    );
  });

  it('issue 14.2: status_page needs a websockets listener, and not http_dir beside it', () => {
    expect(
      parseConfig(`listener 9001\nprotocol websockets\nstatus_page true\n`, FILE).listeners[0].statusPage,
    ).toBe(true);
    expect(() => parseConfig(`listener 1883\nstatus_page true\n`, FILE)).toThrow(/status_page.*websockets/);
    expect(() =>
      parseConfig(`listener 9001\nprotocol websockets\nstatus_page true\nhttp_dir www\n`, FILE),
    ).toThrow(/both http_dir and status_page/);
  });
});

describe('issue 14.2: request targets (unit)', () => {
  it('issue 14.2: segments are decoded one by one; .. and hidden names refused before the disk', () => {
    expect(parseTarget('/a/b.js?x=1')).toEqual({ ok: true, segments: ['a', 'b.js'], directory: false });
    expect(parseTarget('/a/./b/')).toEqual({ ok: true, segments: ['a', 'b'], directory: true });
    expect(parseTarget('/')).toEqual({ ok: true, segments: [], directory: true });
    expect(parseTarget('/a%2Fb')).toEqual({ ok: false, status: 400 });
    expect(parseTarget('/../x')).toEqual({ ok: false, status: 404 });
    expect(parseTarget('/%2e%2e')).toEqual({ ok: false, status: 404 });
    expect(parseTarget('*')).toEqual({ ok: false, status: 400 });
    expect(isInside('/srv/www', '/srv/www2/x')).toBe(false);
    expect(isInside('/srv/www', '/srv/www/x')).toBe(true);
    expect(isInside('/srv/www', '/srv/www')).toBe(true);
  });
});
