/**
 * What a verified client certificate names, for Mosquitto's `use_identity_as_username` (the
 * subject's first CN) and `use_subject_as_username` (the whole subject as Mosquitto prints it:
 * OpenSSL's X509_NAME_print_ex with XN_FLAG_RFC2253, e.g. `CN=dev 9,OU=Sensors,O=Acme\, Inc.,C=GB`).
 *
 * Node prints a subject only in its own multi-line form (first RDN first, UTF-8 unescaped, values
 * of unknown attributes as text), so the RFC 2253 form is rebuilt here: the attributes and their
 * raw values from the certificate's DER, the attribute names (OpenSSL's short names, the same
 * table Mosquitto's OpenSSL uses) from Node's form, and OpenSSL's escaping rules.
 */
import type { X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';

/** The first CN of a verified peer certificate's subject, or undefined. */
export function peerCommonName(socket: Socket): string | undefined {
  if (!(socket instanceof TLSSocket) || !socket.authorized) return undefined;
  const cert = socket.getPeerCertificate();
  if (cert === null || typeof cert !== 'object') return undefined;
  const cn: string | string[] | undefined = cert.subject?.CN;
  const first = Array.isArray(cn) ? cn[0] : cn;
  // Mosquitto refuses a CN with an embedded NUL (a name that C code would cut short).
  return first === undefined || first.includes('\0') ? undefined : first;
}

/** A verified peer certificate's subject in Mosquitto's form, or undefined. */
export function peerSubject(socket: Socket): string | undefined {
  if (!(socket instanceof TLSSocket) || !socket.authorized) return undefined;
  const cert = socket.getPeerX509Certificate();
  return cert === undefined ? undefined : subjectRfc2253(cert);
}

interface Tlv {
  tag: number;
  body: number;
  end: number;
}

function tlv(b: Uint8Array, pos: number, limit: number, tag?: number): Tlv {
  if (pos + 2 > limit) throw new RangeError('truncated DER');
  const t = b[pos];
  if ((t & 0x1f) === 0x1f) throw new RangeError('DER tag number above 30');
  if (tag !== undefined && t !== tag) throw new RangeError(`DER tag ${t}, expected ${tag}`);
  let len = b[pos + 1];
  let body = pos + 2;
  if (len >= 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || body + n > limit) throw new RangeError('bad DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[body++];
  }
  if (body + len > limit) throw new RangeError('truncated DER');
  return { tag: t, body, end: body + len };
}

interface Attribute {
  /** Index of its RDN: attributes of one multi-valued RDN share it. */
  rdn: number;
  /** The value's DER (tag, length, content) and its content. */
  der: Uint8Array;
  tag: number;
  content: Uint8Array;
}

/** The subject's attributes in certificate order (RFC 5280: tbsCertificate's sixth field). */
function subjectAttributes(raw: Uint8Array): Attribute[] {
  const cert = tlv(raw, 0, raw.length, 0x30);
  const tbs = tlv(raw, cert.body, cert.end, 0x30);
  let field = tlv(raw, tbs.body, tbs.end);
  if (field.tag === 0xa0) field = tlv(raw, field.end, tbs.end); // [0] version
  // serialNumber, signature, issuer, validity, subject
  for (let i = 0; i < 4; i++) field = tlv(raw, field.end, tbs.end);
  if (field.tag !== 0x30) throw new RangeError('no subject');
  const out: Attribute[] = [];
  let rdn = 0;
  for (let p = field.body; p < field.end; rdn++) {
    const set = tlv(raw, p, field.end, 0x31);
    p = set.end;
    for (let q = set.body; q < set.end; ) {
      const ava = tlv(raw, q, set.end, 0x30);
      q = ava.end;
      const oid = tlv(raw, ava.body, ava.end, 0x06);
      const value = tlv(raw, oid.end, ava.end);
      out.push({
        rdn,
        der: raw.subarray(oid.end, value.end),
        tag: value.tag,
        content: raw.subarray(value.body, value.end),
      });
    }
  }
  return out;
}

/** Node's multi-line subject: one RDN a line, ` + ` between the attributes of one RDN. */
function attributeNames(subject: string): string[] {
  if (subject === '') return [];
  const names: string[] = [];
  // Escaping (RFC 2253 and control characters) keeps `\n` and ` + ` out of the values.
  for (const line of subject.split('\n'))
    for (const attr of line.split(' + ')) names.push(attr.slice(0, attr.indexOf('=')));
  return names;
}

/**
 * Bytes per character of the universal string types OpenSSL prints as text (0: UTF-8, kept as
 * bytes); any other type is dumped as `#` and the hex of its DER.
 */
const WIDTH: Record<number, number> = {
  12: 0,
  18: 1,
  19: 1,
  20: 1,
  22: 1,
  23: 1,
  24: 1,
  26: 1,
  28: 4,
  30: 2,
};
const ESCAPED = new Set([0x22, 0x2b, 0x2c, 0x3b, 0x3c, 0x3e, 0x5c]); // " + , ; < > \
const HEX = '0123456789ABCDEF';

function hex2(byte: number): string {
  return HEX[byte >> 4] + HEX[byte & 15];
}

function dump(a: Attribute): string {
  let s = '#';
  for (const byte of openSslDer(a)) s += hex2(byte);
  return s;
}

/**
 * The DER OpenSSL prints: what it re-encodes from what it parsed, which differs from the
 * certificate's bytes for a BIT STRING only. OpenSSL keeps the unused-bit count and clears those
 * bits of the last byte, and writes a count of 0 when no byte follows it.
 */
function openSslDer(a: Attribute): Uint8Array {
  if (a.tag !== 3 || a.content.length === 0) return a.der;
  const der = a.der.slice();
  const at = der.length - a.content.length;
  const unused = der[at] & 7;
  if (a.content.length === 1) der[at] = 0;
  else der[der.length - 1] &= (0xff << unused) & 0xff;
  return der;
}

/** The UTF-8 bytes of a code point; none above U+10FFFF (OpenSSL drops those). */
function utf8(c: number): number[] {
  if (c < 0x80) return [c];
  if (c < 0x800) return [0xc0 | (c >> 6), 0x80 | (c & 63)];
  if (c < 0x10000) return [0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63)];
  if (c < 0x110000)
    return [0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63)];
  return [];
}

/** One attribute value with OpenSSL's RFC 2253 escaping (ESC_2253, ESC_CTRL, ESC_MSB, UTF-8). */
function printValue(a: Attribute): string {
  const width = WIDTH[a.tag];
  if (width === undefined) return dump(a);
  const chars: number[][] = [];
  const c = a.content;
  // UTF8String stays bytes (OpenSSL does not convert UTF-8 to UTF-8); one-byte types are Latin-1.
  if (width === 0) for (const byte of c) chars.push([byte]);
  else if (width === 1) for (const byte of c) chars.push(utf8(byte));
  else {
    if (c.length % width !== 0) throw new RangeError('string length is not a multiple of its width');
    for (let i = 0; i < c.length; i += width) {
      const cp =
        width === 2
          ? (c[i] << 8) | c[i + 1]
          : ((c[i] << 24) | (c[i + 1] << 16) | (c[i + 2] << 8) | c[i + 3]) >>> 0;
      chars.push(utf8(cp));
    }
  }
  let s = '';
  for (let i = 0; i < chars.length; i++) {
    // OpenSSL's quirk: the last character's flag replaces the first's (a lone '#' stays bare).
    const last = i === chars.length - 1;
    const first = i === 0 && !last;
    for (const u of chars[i]) {
      if (u > 0x7f) s += `\\${hex2(u)}`;
      else if (ESCAPED.has(u) || (u === 0x20 && (first || last)) || (u === 0x23 && first))
        s += `\\${String.fromCharCode(u)}`;
      else if (u < 0x20 || u === 0x7f) s += `\\${hex2(u)}`;
      else s += String.fromCharCode(u);
    }
  }
  return s;
}

/**
 * The subject as Mosquitto's use_subject_as_username makes it: last RDN first, `,` between
 * RDNs and `+` inside one, OpenSSL short names, attributes OpenSSL does not know as their OID
 * with `#` and the hex of the value's DER. Undefined if the certificate cannot be read so.
 */
export function subjectRfc2253(cert: X509Certificate): string | undefined {
  let attrs: Attribute[];
  try {
    attrs = subjectAttributes(cert.raw);
  } catch {
    return undefined;
  }
  const names = attributeNames(cert.subject ?? '');
  if (names.length !== attrs.length) return undefined;
  let out = '';
  try {
    for (let i = attrs.length - 1; i >= 0; i--) {
      const a = attrs[i];
      if (i < attrs.length - 1) out += attrs[i + 1].rdn === a.rdn ? '+' : ',';
      const unknown = /^[0-9]+(?:\.[0-9]+)+$/.test(names[i]);
      out += `${names[i]}=${unknown ? dump(a) : printValue(a)}`;
    }
  } catch {
    return undefined;
  }
  return out;
}
