/**
 * Issue 12.1: on a TLS listener a client certificate is a user name only where the listener
 * says so (use_identity_as_username: its CN; use_subject_as_username: its subject, RFC 2253 as
 * Mosquitto prints it); everywhere else the password file decides. Real TLS, a real password
 * file and ACL file, the broker built from mosquitto.conf text as the CLI builds it.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import type { ConnectPacket } from '@mqtt-edge/codec';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasMosquitto, startMosquitto } from '../../../test/helpers/mosquitto.ts';
import { HAS_OPENSSL, TestPki } from '../../../test/helpers/tls.ts';
import { ConfigError, parseConfig } from '../src/config.ts';
import { hashPassword } from '../src/passwd.ts';
import { type ConfiguredBroker, startConfigured, tlsConnect } from './helpers/config-broker.ts';

if (!HAS_OPENSSL) console.warn('openssl not installed: TLS identity tests skipped');

const DEV9_SUBJECT = '/C=GB/ST=Notts/O=Acme, Inc./OU=Sensors/CN=dev 9';
/** UTF-8, a multi-valued RDN, RFC 2253 specials and a leading '#'. */
const TRICKY_SUBJECT = '/C=DE/O=Grüße; Co/OU=Ops+OU=Prod/CN=#dev "10" <x>\\y';

describe.skipIf(!HAS_OPENSSL)('issue 12.1: client certificates and the password file', () => {
  let pki: TestPki;
  let tb: ConfiguredBroker;
  let passwordPort: number;
  let identityPort: number;
  let subjectPort: number;
  /** What `openssl x509 -nameopt RFC2253` prints for dev9's subject (Mosquitto's format). */
  let dev9: string;
  const pem = (name: string) => pki.read(name);
  const withCert = (name: string) => ({
    ca: pem('ca.crt'),
    cert: pem(`${name}.crt`),
    key: pem(`${name}.key`),
  });
  /**
   * Logs in with certificate `cert` on `port` and expects CONNACK 0; then the ACL must grant
   * `granted` and refuse `refused` (with `code`): the rules the broker applied show who it took
   * the client for. Returns the user name of its "client connected" log line.
   */
  async function admittedAs(
    port: number,
    cert: string,
    connect: Partial<ConnectPacket> & { clientId: string },
    acl: { granted: string; refused: string; code: number },
  ): Promise<unknown> {
    const { client, connack } = await tlsConnect(port, withCert(cert), connect);
    expect(connack?.reasonCode).toBe(0);
    expect(await client.subscribe(acl.granted, 1)).toEqual([1]);
    expect(await client.subscribe(acl.refused, 1, 2)).toEqual([acl.code]);
    await client.disconnect();
    const line = tb.logs.find(
      (l) => l.message === 'client connected' && l.fields?.clientId === connect.clientId,
    );
    return line?.fields?.username;
  }

  beforeAll(async () => {
    pki = new TestPki('bl-tls-identity-')
      .ca()
      .leaf('server', { cn: 'localhost', san: 'DNS:localhost,IP:127.0.0.1' })
      .leaf('alice', { cn: 'alice' })
      .leaf('dev9', { subject: DEV9_SUBJECT })
      .leaf('nocn', { subject: '/O=Acme/OU=No Common Name' })
      .leaf('tricky', { subject: TRICKY_SUBJECT });
    dev9 = execFileSync('openssl', [
      'x509',
      '-in',
      pki.file('dev9.crt'),
      '-noout',
      '-subject',
      '-nameopt',
      'RFC2253',
    ])
      .toString()
      .trim()
      .replace(/^subject=/, '');
    writeFileSync(pki.file('passwd'), `alice:${await hashPassword('right', { iterations: 10 })}\n`);
    writeFileSync(
      pki.file('acl'),
      ['pattern readwrite users/%u/#', `user ${dev9}`, 'topic readwrite fleet/dev9/#', ''].join('\n'),
    );
    const tlsKeys = (extra: string) =>
      `certfile server.crt\nkeyfile server.key\ncafile ca.crt\nrequire_certificate true\n${extra}\n`;
    tb = await startConfigured(
      pki.dir,
      [
        'password_file passwd',
        'acl_file acl',
        'allow_anonymous false',
        'listener 0 127.0.0.1',
        tlsKeys('use_identity_as_username false'),
        'listener 0 127.0.0.1',
        tlsKeys('use_identity_as_username true'),
        'listener 0 127.0.0.1',
        tlsKeys('use_subject_as_username true'),
      ].join('\n'),
    );
    [passwordPort, identityPort, subjectPort] = tb.ports;
  });
  afterAll(async () => {
    await tb?.close();
    pki?.remove();
  });

  it('issue 12.1: CN equal to the user name with a wrong password is refused (5 / 0x87, as Mosquitto: issue 15)', async () => {
    const v4 = await tlsConnect(passwordPort, withCert('alice'), {
      clientId: 'a-wrong',
      username: 'alice',
      password: Buffer.from('wrong'),
    });
    expect(v4.connack?.reasonCode).toBe(5);
    const v5 = await tlsConnect(passwordPort, withCert('alice'), {
      protocolVersion: 5,
      clientId: 'a-wrong5',
      username: 'alice',
      password: Buffer.from('wrong'),
    });
    expect(v5.connack?.reasonCode).toBe(0x87);
    await Promise.all([v4.client.closed, v5.client.closed]);
  });

  it('issue 12.1: CN equal to the user name without a password is refused', async () => {
    const { client, connack } = await tlsConnect(passwordPort, withCert('alice'), {
      clientId: 'a-none',
      username: 'alice',
    });
    expect(connack?.reasonCode).toBe(5);
    await client.closed;
  });

  it('issue 12.1: the right password with the certificate is accepted', async () => {
    const { client, connack } = await tlsConnect(passwordPort, withCert('alice'), {
      clientId: 'a-right',
      username: 'alice',
      password: Buffer.from('right'),
    });
    expect(connack?.reasonCode).toBe(0);
    expect(await client.subscribe('users/alice/x', 1)).toEqual([1]);
    await client.disconnect();
  });

  it('issue 12.1: no certificate on a require_certificate listener gets no CONNACK 0', async () => {
    for (const port of [passwordPort, identityPort, subjectPort]) {
      const { connack } = await tlsConnect(
        port,
        { ca: pem('ca.crt') },
        { clientId: 'nocert', username: 'alice', password: Buffer.from('right') },
      );
      expect(connack).toBeNull();
    }
  });

  it('issue 12.1: use_identity_as_username: a certificate without a CN is refused (4 / 0x86)', async () => {
    const v4 = await tlsConnect(identityPort, withCert('nocn'), { clientId: 'nocn', username: 'alice' });
    expect(v4.connack?.reasonCode).toBe(4);
    const v5 = await tlsConnect(identityPort, withCert('nocn'), { protocolVersion: 5, clientId: 'nocn5' });
    expect(v5.connack?.reasonCode).toBe(0x86);
  });

  it('issue 12.1: openssl prints the test certificate subject as expected', () => {
    expect(dev9).toBe('CN=dev 9,OU=Sensors,O=Acme\\, Inc.,ST=Notts,C=GB');
  });

  // [what, listener, certificate, CONNECT, ACL grants / refuses (code), the user name it must get]
  const IDENTITIES: Array<
    [
      string,
      () => number,
      string,
      Partial<ConnectPacket> & { clientId: string },
      [string, string, number],
      () => string,
    ]
  > = [
    [
      // The ACL's %u is the CN: alice's own tree, not the claimed user's.
      'use_identity_as_username: the CN is the user name, the sent name and password are ignored',
      () => identityPort,
      'alice',
      { clientId: 'id-alice', username: 'mallory', password: Buffer.from('anything') },
      ['users/alice/x', 'users/mallory/x', 0x80],
      () => 'alice',
    ],
    [
      // `user CN=dev 9,...` rules of the ACL file apply; alice's do not.
      'use_subject_as_username: the subject, as Mosquitto prints it, is the user name',
      () => subjectPort,
      'dev9',
      { protocolVersion: 5, clientId: 'subj-dev9', username: 'alice', password: Buffer.from('right') },
      ['fleet/dev9/cmd', 'users/alice/x', 0x87],
      () => dev9,
    ],
    [
      // alice's certificate on the subject listener: user name CN=alice, not alice.
      'use_subject_as_username: a CN that is a user in the password file does not matter',
      () => subjectPort,
      'alice',
      { clientId: 'subj-alice', username: 'alice', password: Buffer.from('wrong') },
      ['users/CN=alice/x', 'users/alice/x', 0x80],
      () => 'CN=alice',
    ],
  ];
  for (const [what, port, cert, connect, [granted, refused, code], user] of IDENTITIES) {
    it(`issue 12.1: ${what}`, async () => {
      expect(await admittedAs(port(), cert, connect, { granted, refused, code })).toBe(user());
    });
  }
});

describe.skipIf(!HAS_OPENSSL || !hasMosquitto())(
  'issue 12.1: the subject user name is the one Mosquitto uses',
  () => {
    it('issue 12.1: same certificates, same user names as Mosquitto 2 with use_subject_as_username', async () => {
      const pki = new TestPki('bl-subject-mosquitto-')
        .ca()
        .leaf('server', { cn: 'localhost', san: 'DNS:localhost,IP:127.0.0.1' })
        .leaf('dev9', { subject: DEV9_SUBJECT })
        .leaf('tricky', { subject: TRICKY_SUBJECT });
      const tls = `cafile ${pki.file('ca.crt')}\ncertfile ${pki.file('server.crt')}\nkeyfile ${pki.file('server.key')}\nrequire_certificate true\nuse_subject_as_username true`;
      const mosquitto = await startMosquitto({ config: `${tls}\nlog_type all\nconnection_messages true` });
      const ours = await startConfigured(pki.dir, `listener 0 127.0.0.1\n${tls}\n`);
      try {
        for (const cert of ['dev9', 'tricky']) {
          const creds = {
            ca: pki.read('ca.crt'),
            cert: pki.read(`${cert}.crt`),
            key: pki.read(`${cert}.key`),
          };
          const theirs = await tlsConnect(mosquitto.port, creds, { clientId: `m-${cert}` });
          expect(theirs.connack?.reasonCode).toBe(0);
          await theirs.client.disconnect();
          const mine = await tlsConnect(ours.ports[0], creds, { clientId: `b-${cert}` });
          expect(mine.connack?.reasonCode).toBe(0);
          await mine.client.disconnect();
          // Mosquitto: "New client connected from ... as m-dev9 (p2, c1, k60, u'CN=dev 9,...')."
          const logged = new RegExp(`as m-${cert} \\(.*u'(.*)'\\)\\.`).exec(mosquitto.log());
          expect(logged, mosquitto.log()).not.toBeNull();
          const line = ours.logs.find(
            (l) => l.message === 'client connected' && l.fields?.clientId === `b-${cert}`,
          );
          expect(line?.fields?.username).toBe(logged?.[1]);
        }
      } finally {
        await ours.close();
        await mosquitto.stop();
        pki.remove();
      }
    });
  },
);

describe('issue 12.1: use_subject_as_username in mosquitto.conf', () => {
  const parse = (text: string) => parseConfig(text, '/etc/mosquitto/mosquitto.conf');
  const tlsListener = 'listener 8883\ncertfile s.crt\nkeyfile s.key\ncafile ca.crt\n';

  it('is a per-listener boolean, off by default', () => {
    const cfg = parse(
      `${tlsListener}require_certificate true\nuse_subject_as_username true\nlistener 1883\n`,
    );
    expect(cfg.listeners.map((l) => l.useSubjectAsUsername)).toEqual([true, false]);
  });

  it('needs require_certificate true, naming the listener', () => {
    expect(() => parse(`${tlsListener}use_subject_as_username true\n`)).toThrow(ConfigError);
    expect(() => parse(`${tlsListener}use_subject_as_username true\n`)).toThrow(
      /use_subject_as_username on port 8883 needs require_certificate true/,
    );
  });
});
