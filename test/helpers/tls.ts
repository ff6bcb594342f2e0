/**
 * Certificates for TLS tests, made by the system's `openssl` in a fresh temporary directory:
 * a CA and leaves it signed (server, client), or self-signed certificates. EC P-256 keys (an
 * RSA key takes ~100 ms to generate; these take a few). Every file is `NAME.crt` / `NAME.key`.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const HAS_OPENSSL: boolean = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

export interface LeafOptions {
  /** Common name; default the leaf's file name. */
  cn?: string;
  /**
   * The whole subject in `openssl -subj` form (`/C=GB/O=Acme, Inc./CN=dev 9`, UTF-8, `+` joins
   * a multi-valued RDN) in place of `/CN=cn`.
   */
  subject?: string;
  /** subjectAltName value, e.g. `DNS:localhost,IP:127.0.0.1` (servers need one). */
  san?: string;
  /** The CA that signs it; default `ca`. */
  ca?: string;
}

export class TestPki {
  readonly dir: string;

  constructor(prefix = 'tls-') {
    this.dir = mkdtempSync(join(tmpdir(), prefix));
  }

  /** The path of `NAME` in this directory (`pki.file('ca.crt')`). */
  file(name: string): string {
    return join(this.dir, name);
  }

  /** A file's text (PEM). */
  read(name: string): string {
    return readFileSync(this.file(name), 'utf8');
  }

  /** A self-signed CA certificate `NAME.crt` with its key `NAME.key`. */
  ca(name = 'ca', cn = name): this {
    return this.selfSignedWith(name, cn, []);
  }

  /** `NAME.crt` / `NAME.key` signed by a CA made with ca() before. */
  leaf(name: string, options: LeafOptions = {}): this {
    const ca = options.ca ?? 'ca';
    const subject = options.subject === undefined ? [] : ['-utf8', '-multivalue-rdn'];
    this.openssl(
      'req',
      ...EC_KEY,
      ...subject,
      '-subj',
      options.subject ?? `/CN=${options.cn ?? name}`,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
    );
    const ext: string[] = [];
    if (options.san !== undefined) {
      writeFileSync(this.file(`${name}.ext`), `subjectAltName=${options.san}\n`);
      ext.push('-extfile', `${name}.ext`);
    }
    this.openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${ca}.crt`,
      '-CAkey',
      `${ca}.key`,
      '-CAcreateserial',
      '-days',
      '1',
      ...ext,
      '-out',
      `${name}.crt`,
    );
    return this;
  }

  /** A self-signed leaf (its own CA) for `cn`, with subjectAltName `san` (default `DNS:cn`). */
  selfSigned(name: string, cn: string, san = `DNS:${cn}`): this {
    return this.selfSignedWith(name, cn, ['-addext', `subjectAltName=${san}`]);
  }

  private selfSignedWith(name: string, cn: string, extra: string[]): this {
    const out = ['-keyout', `${name}.key`, '-out', `${name}.crt`];
    this.openssl('req', '-x509', ...EC_KEY, '-days', '1', '-subj', `/CN=${cn}`, ...extra, ...out);
    return this;
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  private openssl(...args: string[]): void {
    execFileSync('openssl', args, { cwd: this.dir, stdio: 'pipe' });
  }
}

/**
 * The usual set: CA `ca`, `server` for localhost / 127.0.0.1, `client` (CN `clientCn`).
 */
export function serverAndClientPki(prefix: string, clientCn = 'client'): TestPki {
  return new TestPki(prefix)
    .ca()
    .leaf('server', { cn: 'localhost', san: 'DNS:localhost,IP:127.0.0.1' })
    .leaf('client', { cn: clientCn });
}
