/**
 * Plain HTTP on a websockets listener (the requests that are not an upgrade): Mosquitto's
 * `http_dir`, static files from a directory, or the built-in status page (`status_page true`).
 *
 * What a request can reach is decided from the path alone, before the file system is asked:
 * GET and HEAD only, each `/`-separated segment percent-decoded on its own (so `%2F` cannot
 * make a new segment), no `..`, no segment starting with `.` (no `.htpasswd`, no `.git`), no
 * NUL or backslash. The file found is resolved with realpath and must lie inside the
 * directory's own realpath (a proper prefix check: `/srv/www2` is not inside `/srv/www`), so a
 * symbolic link may point within the directory but never out of it; it is then opened by its
 * resolved name with O_NOFOLLOW and must be a regular file. What one listener holds is bounded:
 * MAX_OPEN_FILES files streamed at once (503 beyond), no file is read into memory, and the
 * socket is a pending one (max_connections, the connect timeout) like any before its upgrade.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Broker } from './broker.ts';
import type { ListenerOptions } from './options.ts';

/** Longer request targets get 414 (Node already bounds the whole header block at 16 KiB). */
export const MAX_URL_CHARS = 2048;
/** Files one listener streams at once: each holds a file descriptor until it is sent. */
export const MAX_OPEN_FILES = 64;

/** Content types by extension; anything else is application/octet-stream. */
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.htm': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
  '.xml': 'application/xml',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.wasm': 'application/wasm',
  '.pdf': 'application/pdf',
};

export function contentType(name: string): string {
  return TYPES[path.extname(name).toLowerCase()] ?? 'application/octet-stream';
}

/** A request target as the file it may name: its decoded segments, and whether it ends in `/`. */
export type Target =
  | { ok: true; segments: string[]; directory: boolean }
  | { ok: false; status: 400 | 404 | 414 };

/**
 * Reads the path of a request target (origin form only; the query is ignored). Nothing here
 * touches the file system: a target that could leave the served directory is refused.
 */
export function parseTarget(url: string): Target {
  if (url.length > MAX_URL_CHARS) return { ok: false, status: 414 };
  if (!url.startsWith('/')) return { ok: false, status: 400 };
  let end = url.length;
  const q = url.indexOf('?');
  if (q >= 0) end = q;
  const h = url.indexOf('#');
  if (h >= 0 && h < end) end = h;
  const raw = url.slice(0, end);
  const segments: string[] = [];
  for (const part of raw.split('/')) {
    if (part === '') continue;
    let s: string;
    try {
      s = decodeURIComponent(part);
    } catch {
      return { ok: false, status: 400 };
    }
    if (s.includes('/') || s.includes('\\') || s.includes('\0')) return { ok: false, status: 400 };
    if (s === '.') continue;
    // `..` and hidden names are never served: not found, whatever is on disk.
    if (s.startsWith('.')) return { ok: false, status: 404 };
    segments.push(s);
  }
  return { ok: true, segments, directory: raw.endsWith('/') || segments.length === 0 };
}

/** `p` is `root` or below it (both resolved, absolute). */
export function isInside(root: string, p: string): boolean {
  if (p === root) return true;
  const prefix = root.endsWith(path.sep) ? root : root + path.sep;
  return p.startsWith(prefix);
}

/** A file the status page serves from memory. */
export interface PageFile {
  path: string;
  type: string;
  body: string;
}

interface MemoryFile {
  type: string;
  body: Buffer;
  gzip: Buffer;
  etag: string;
}

/** The status page's own headers: its script and style come from here, its socket goes back here. */
const PAGE_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

function reply(res: http.ServerResponse, status: number, extra?: Record<string, string>): void {
  const body = `${status} ${statusText(status)}\n`;
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-content-type-options': 'nosniff',
    connection: 'close',
    ...extra,
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function statusText(status: number): string {
  switch (status) {
    case 400:
      return 'Bad Request';
    case 403:
      return 'Forbidden';
    case 404:
      return 'Not Found';
    case 405:
      return 'Method Not Allowed';
    case 414:
      return 'URI Too Long';
    case 503:
      return 'Service Unavailable';
    default:
      return 'Internal Server Error';
  }
}

function notModified(req: http.IncomingMessage, etag: string): boolean {
  const inm = req.headers['if-none-match'];
  if (inm === undefined) return false;
  return inm
    .split(',')
    .map((t) => t.trim())
    .some((t) => t === etag || t === '*');
}

export type RequestHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** The status page's files, built (from source) or embedded (installed): see `#status-page`. */
async function loadPage(): Promise<Map<string, MemoryFile>> {
  const { statusPageFiles } = await import('#status-page');
  const files = new Map<string, MemoryFile>();
  for (const f of await statusPageFiles()) {
    const body = Buffer.from(f.body, 'utf8');
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 16)}"`;
    files.set(f.path, { type: f.type, body, gzip: gzipSync(body, { level: 9 }), etag });
  }
  return files;
}

function servePage(
  files: Map<string, MemoryFile>,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): void {
  const t = parseTarget(req.url ?? '');
  if (!t.ok) {
    reply(res, t.status);
    return;
  }
  const name = t.directory ? [...t.segments, 'index.html'].join('/') : t.segments.join('/');
  const f = files.get(name);
  if (f === undefined) {
    reply(res, 404);
    return;
  }
  const headers: Record<string, string | number> = {
    ...PAGE_HEADERS,
    'content-type': f.type,
    etag: f.etag,
    vary: 'accept-encoding',
  };
  if (notModified(req, f.etag)) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  const gzip = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
  const body = gzip ? f.gzip : f.body;
  if (gzip) headers['content-encoding'] = 'gzip';
  headers['content-length'] = body.length;
  res.writeHead(200, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** Statuses for what realpath and open(2) say about a name. */
function fsStatus(err: NodeJS.ErrnoException): number {
  switch (err.code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return 404;
    case 'EACCES':
    case 'EPERM':
    case 'ELOOP':
      return 403;
    case 'ENAMETOOLONG':
      return 414;
    default:
      return 500;
  }
}

class DirServer {
  private open = 0;
  constructor(
    private readonly b: Broker,
    /** The directory's realpath. */
    private readonly root: string,
  ) {}

  readonly handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const t = parseTarget(req.url ?? '');
    if (!t.ok) {
      reply(res, t.status);
      return;
    }
    const name = t.directory ? [...t.segments, 'index.html'] : t.segments;
    fs.realpath(path.join(this.root, ...name), (err, real) => {
      if (err) return reply(res, fsStatus(err));
      if (!isInside(this.root, real)) {
        this.b.log('notice', 'http_dir: request for a file outside the directory refused', {
          path: req.url?.slice(0, 200),
        });
        return reply(res, 404);
      }
      if (this.open >= MAX_OPEN_FILES) return reply(res, 503, { 'retry-after': '1' });
      this.open++;
      let released = false;
      const release = (): void => {
        if (released) return;
        released = true;
        this.open--;
      };
      // O_NOFOLLOW: a name swapped for a link after realpath is not followed; O_NONBLOCK: a
      // FIFO does not hang the open (fstat refuses it next).
      const flags = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;
      fs.open(real, flags, (err2, fd) => {
        if (err2) {
          release();
          return reply(res, fsStatus(err2));
        }
        const done = (status?: number, extra?: Record<string, string>): void => {
          fs.close(fd, () => {});
          release();
          if (status !== undefined) reply(res, status, extra);
        };
        fs.fstat(fd, (err3, st) => {
          if (err3) return done(500);
          if (st.isDirectory()) {
            // As Mosquitto: a directory named without its slash is redirected to it. The
            // Location is rebuilt from the checked segments, so it cannot name another host.
            if (t.directory) return done(403);
            return done(302, { location: `/${t.segments.map(encodeURIComponent).join('/')}/` });
          }
          if (!st.isFile()) return done(403);
          const etag = `W/"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
          const headers: Record<string, string | number> = {
            'content-type': contentType(name[name.length - 1] ?? 'index.html'),
            'x-content-type-options': 'nosniff',
            'last-modified': st.mtime.toUTCString(),
            'cache-control': 'no-cache',
            etag,
          };
          if (notModified(req, etag)) {
            res.writeHead(304, headers);
            res.end();
            return done();
          }
          headers['content-length'] = st.size;
          res.writeHead(200, headers);
          if (req.method === 'HEAD' || st.size === 0) {
            res.end();
            return done();
          }
          const stream = fs.createReadStream('', { fd, start: 0, end: st.size - 1, autoClose: true });
          stream.once('close', release);
          stream.once('error', () => res.destroy());
          res.once('close', () => stream.destroy());
          stream.pipe(res);
        });
      });
    });
  };
}

/**
 * The handler for requests that are not an upgrade on a websockets listener with `http_dir` or
 * `status_page`. Throws when http_dir cannot be resolved (as Mosquitto refuses to open the
 * listener).
 */
export async function createHttpHandler(b: Broker, opts: ListenerOptions): Promise<RequestHandler> {
  const methods = (inner: RequestHandler): RequestHandler => {
    return (req, res) => {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        reply(res, 405, { allow: 'GET, HEAD' });
        return;
      }
      inner(req, res);
    };
  };
  if (opts.statusPage === true) {
    const files = await loadPage();
    return methods((req, res) => servePage(files, req, res));
  }
  if (opts.httpDir === undefined) throw new Error('createHttpHandler: no http_dir and no status_page');
  let root: string;
  try {
    root = fs.realpathSync(opts.httpDir);
    if (!fs.statSync(root).isDirectory()) throw new Error('not a directory');
  } catch (err) {
    throw new Error(`unable to open http_dir ${opts.httpDir}: ${(err as Error).message}`);
  }
  return methods(new DirServer(b, root).handle);
}
