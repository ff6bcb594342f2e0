import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { matchTopic } from '@mqtt-edge/codec';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AclFile } from '../src/acl.ts';
import { ConfigError } from '../src/config-error.ts';

const anon = { clientId: 'anon-1', username: undefined };
const alice = { clientId: 'alice-phone', username: 'alice' };
const bob = { clientId: 'bob-1', username: 'bob' };

function acl(text: string): AclFile {
  return AclFile.parse(text, '/etc/mosquitto/acl');
}

describe('ACL rules', () => {
  const rules = acl(`# anonymous clients: read the public tree
topic read public/#
topic deny public/secret

user alice
topic alice/#
topic write cmd/+/set
topic read $SYS/#

user bob
topic readwrite bob/#
topic deny bob/private/#

# every client
pattern readwrite devices/%c/#
pattern read users/%u/inbox
pattern write %u-out/%c
`);

  it('gives anonymous clients the lines before any user, and patterns without %u', () => {
    expect(rules.allowed('read', anon, 'public/news')).toBe(true);
    expect(rules.allowed('write', anon, 'public/news')).toBe(false);
    expect(rules.allowed('read', anon, 'alice/x')).toBe(false);
    expect(rules.allowed('write', anon, 'devices/anon-1/temp')).toBe(true);
    expect(rules.allowed('read', anon, 'users/anon-1/inbox')).toBe(false);
  });

  it('gives a user their own lines plus the patterns, not the anonymous ones', () => {
    expect(rules.allowed('read', alice, 'alice/a/b')).toBe(true);
    expect(rules.allowed('write', alice, 'alice')).toBe(true);
    expect(rules.allowed('write', alice, 'cmd/lamp/set')).toBe(true);
    expect(rules.allowed('read', alice, 'cmd/lamp/set')).toBe(false);
    expect(rules.allowed('read', alice, 'public/news')).toBe(false);
    expect(rules.allowed('read', alice, 'bob/x')).toBe(false);
    expect(rules.allowed('read', bob, 'bob/x')).toBe(true);
  });

  it('substitutes %c and %u in whole levels and inside a level', () => {
    expect(rules.allowed('write', alice, 'devices/alice-phone/gps')).toBe(true);
    expect(rules.allowed('write', alice, 'devices/bob-1/gps')).toBe(false);
    expect(rules.allowed('read', alice, 'users/alice/inbox')).toBe(true);
    expect(rules.allowed('read', alice, 'users/bob/inbox')).toBe(false);
    expect(rules.allowed('write', alice, 'alice-out/alice-phone')).toBe(true);
    expect(rules.allowed('write', alice, 'bob-out/alice-phone')).toBe(false);
    // A user not in the file still gets the patterns.
    const carol = { clientId: 'c', username: 'carol' };
    expect(rules.allowed('read', carol, 'users/carol/inbox')).toBe(true);
    expect(rules.allowed('read', carol, 'carol/x')).toBe(false);
  });

  it('lets deny win whatever the line order', () => {
    expect(rules.allowed('read', anon, 'public/secret')).toBe(false);
    expect(rules.allowed('read', bob, 'bob/private/diary')).toBe(false);
    expect(rules.allowed('write', bob, 'bob/private')).toBe(false);
    const later = acl('pattern deny devices/%c/secret\nuser u\ntopic devices/#\n');
    expect(later.allowed('read', { clientId: 'k', username: 'u' }, 'devices/k/secret')).toBe(false);
    expect(later.allowed('read', { clientId: 'k', username: 'u' }, 'devices/k/open')).toBe(true);
    const first = acl('user u\ntopic deny a/#\ntopic a/b\n');
    expect(first.allowed('read', { clientId: 'k', username: 'u' }, 'a/b')).toBe(false);
  });

  it('keeps wildcard-first rules away from $ topics', () => {
    const all = acl('topic #\ntopic read +/x\n');
    expect(all.allowed('read', anon, 'a/b')).toBe(true);
    expect(all.allowed('read', anon, '$SYS/broker/uptime')).toBe(false);
    expect(all.allowed('read', anon, '$x/x')).toBe(false);
    expect(rules.allowed('read', alice, '$SYS/broker/uptime')).toBe(true);
  });

  it('refuses everything to client ids and user names holding + or # when patterns exist', () => {
    expect(rules.allowed('read', { clientId: '+', username: 'alice' }, 'alice/x')).toBe(false);
    expect(rules.allowed('read', { clientId: 'x', username: 'a#' }, 'users/a#/inbox')).toBe(false);
    const noPatterns = acl('user a+b\ntopic x\n');
    expect(noPatterns.allowed('read', { clientId: 'c', username: 'a+b' }, 'x')).toBe(true);
  });

  it('an empty file allows nothing', () => {
    const empty = acl('# nothing\n');
    expect(empty.allowed('read', anon, 'a')).toBe(false);
    expect(empty.allowed('write', alice, 'a')).toBe(false);
    expect(empty.allowed('subscribe', alice, '#')).toBe(false);
  });
});

describe('subscribe checks', () => {
  const rules = acl(`user u
topic read sensors/#
topic read rooms/+/temp
topic write out/#
topic deny sensors/secret/#
pattern read inbox/%u/#
`);
  const u = { clientId: 'c1', username: 'u' };

  it('grants a filter a read rule covers entirely', () => {
    for (const f of [
      'sensors/#',
      'sensors/+/x',
      'sensors/a',
      'rooms/+/temp',
      'rooms/kitchen/temp',
      'inbox/u/#',
    ]) {
      expect(rules.allowed('subscribe', u, f), f).toBe(true);
    }
  });

  // Issue 15: as in Mosquitto, a filter wider than the rules brings what they let be read (each
  // delivery is checked); only a filter that can bring nothing is refused.
  it('issue 15.1: grants a filter wider than the rules when a read rule can match one of its topics', () => {
    for (const f of ['#', '+/x', 'rooms/#', 'rooms/+/+', 'inbox/+/#', '+/+/temp', 'sensors']) {
      expect(rules.allowed('subscribe', u, f), f).toBe(true);
    }
    expect(rules.allowed('read', u, 'rooms/kitchen/temp')).toBe(true);
    expect(rules.allowed('read', u, 'rooms/kitchen/humidity')).toBe(false);
  });

  it('issue 15.1: refuses a filter no read rule can match a topic of, or one a deny rule covers', () => {
    for (const f of [
      'out/#',
      'out/x',
      'rooms/kitchen/humidity',
      'sensors/secret/#',
      'sensors/secret/x',
      'inbox/v/#',
      '$SYS/#',
      'rooms/+/humidity',
    ]) {
      expect(rules.allowed('subscribe', u, f), f).toBe(false);
    }
  });

  it('grants a filter partly under a deny rule; the deliveries are filtered one by one', () => {
    expect(rules.allowed('subscribe', u, 'sensors/+/x')).toBe(true);
    expect(rules.allowed('read', u, 'sensors/secret/x')).toBe(false);
    expect(rules.allowed('read', u, 'sensors/open/x')).toBe(true);
  });

  it('checks the filter inside a shared subscription', () => {
    expect(rules.allowed('subscribe', u, '$share/g/sensors/#')).toBe(true);
    expect(rules.allowed('subscribe', u, '$share/g/#')).toBe(true);
    expect(rules.allowed('subscribe', u, '$share/g/out/#')).toBe(false);
    expect(rules.allowed('subscribe', u, '$share/g')).toBe(false);
  });

  it('a `#` rule covers `#` but not $SYS', () => {
    const all = acl('topic read #\n');
    expect(all.allowed('subscribe', anon, '#')).toBe(true);
    expect(all.allowed('subscribe', anon, '+/+')).toBe(true);
    expect(all.allowed('subscribe', anon, '$SYS/#')).toBe(false);
  });

  it("issue 15.1: '$' topics: neither side's leading wildcard reaches them", () => {
    const sys = acl('topic read $SYS/broker/#\ntopic read +/status\n');
    expect(sys.allowed('subscribe', anon, '#')).toBe(true);
    expect(sys.allowed('subscribe', anon, '$SYS/#')).toBe(true);
    expect(sys.allowed('subscribe', anon, '$SYS/broker/uptime')).toBe(true);
    expect(sys.allowed('subscribe', anon, '$SYS/other')).toBe(false);
    // `+/status` never matches `$x/status`, and `#` alone never reaches $SYS/broker/...
    expect(sys.allowed('subscribe', anon, '$x/status')).toBe(false);
    const only = acl('topic read $SYS/#\n');
    expect(only.allowed('subscribe', anon, '#')).toBe(false);
    expect(only.allowed('subscribe', anon, '+/broker/#')).toBe(false);
  });

  it("issue 15.1: '#' also matches its parent level, on either side", () => {
    const r = acl('topic read a/#\ntopic read b\n');
    expect(r.allowed('subscribe', anon, 'a')).toBe(true);
    expect(r.allowed('subscribe', anon, 'b/#')).toBe(true);
    expect(r.allowed('subscribe', anon, 'b/+')).toBe(false);
    expect(r.allowed('subscribe', anon, 'c/#')).toBe(false);
  });
});

describe('ACL file errors', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['unknown keyword', 'topics read a', /unknown keyword 'topics'/],
    ['user without a name', 'user', /needs a user name/],
    ['topic without a topic', 'topic', /needs a topic/],
    ['a bad access word', 'topic reed a/b', /invalid access type 'reed'/],
    ['an invalid filter', 'topic read a/#/b', /invalid topic 'a\/#\/b'/],
    ['a bad wildcard', 'pattern write a+/b', /invalid topic/],
  ];
  for (const [name, line, message] of cases) {
    it(`refuses ${name} with file:line`, () => {
      let err: unknown;
      try {
        acl(`# first\ntopic read ok\n${line}\n`);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      const e = err as ConfigError;
      expect(e.line).toBe(3);
      expect(e.key).toBe('acl_file');
      expect(e.message).toMatch(/^\/etc\/mosquitto\/acl:3: acl_file: /);
      expect(e.message).toMatch(message);
    });
  }

  it('accepts a topic with spaces after an explicit access word, tabs and CRLF', () => {
    const a = acl('topic read a b/c d\r\n\ttopic\twrite\tx/y\r\n');
    expect(a.allowed('read', anon, 'a b/c d')).toBe(true);
    expect(a.allowed('write', anon, 'x/y')).toBe(true);
  });

  it('arbitrary text (fast-check) parses or throws ConfigError, and checks never throw', () => {
    const word = fc.constantFrom(
      'topic',
      'pattern',
      'user',
      'read',
      'write',
      'deny',
      '#',
      '+',
      '%u',
      '%c',
      'a/b',
      '$SYS/#',
      '',
    );
    const line = fc.oneof(
      fc.string({ maxLength: 30 }),
      fc.array(word, { maxLength: 4 }).map((w) => w.join(' ')),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 8 }), fc.string({ maxLength: 12 }), (lines, topic) => {
        let a: AclFile;
        try {
          a = acl(lines.join('\n'));
        } catch (err) {
          expect(err).toBeInstanceOf(ConfigError);
          return;
        }
        for (const access of ['read', 'write', 'subscribe'] as const) {
          expect(typeof a.allowed(access, { clientId: 'c', username: 'u' }, topic || 'x')).toBe('boolean');
          expect(typeof a.allowed(access, anon, topic || 'x')).toBe('boolean');
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('survives hostile input', async () => {
    for (let i = 0; i < 50; i++) {
      const garbage = randomBytes(2048).toString('latin1');
      expect(() => acl(garbage)).toThrow(ConfigError);
    }
    // Line terminators other than \n inside a line (found by the garbage above).
    expect(acl('topic read a\rb\n').allowed('read', anon, 'a\rb')).toBe(true);
    expect(acl('topic read a\u2028b\n').allowed('read', anon, 'a\u2028b')).toBe(true);
    expect(acl('topic\u2028x\n').allowed('read', anon, 'x')).toBe(true);
    const huge = `topic read ${'a/'.repeat(20_000)}b\n`;
    const a = acl(huge);
    expect(a.allowed('read', anon, `${'a/'.repeat(20_000)}b`)).toBe(true);
    expect(() => acl(`topic read ${'x'.repeat(70_000)}\n`)).toThrow(/invalid topic/);
    const dir = mkdtempSync(join(tmpdir(), 'bl-acl-'));
    try {
      await expect(AclFile.load(join(dir, 'missing'))).rejects.toThrow(
        /missing: acl_file: cannot read the file \(ENOENT\)/,
      );
      writeFileSync(join(dir, 'ok'), 'topic read x\n');
      expect((await AclFile.load(join(dir, 'ok'))).allowed('read', anon, 'x')).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('topic matching agrees with the codec', () => {
  const level = fc.constantFrom('a', 'b', '', 'ab', '$x');
  const topicArb = fc.array(level, { minLength: 1, maxLength: 5 }).map((l) => l.join('/'));
  const ruleArb = fc
    .tuple(fc.array(fc.constantFrom('a', 'b', '', '+', '$x'), { minLength: 0, maxLength: 4 }), fc.boolean())
    .map(([l, hash]) => (hash ? [...l, '#'] : l.length ? l : ['a']).join('/'))
    // An empty rule cannot be written on a line (`topic read ` reads as the topic `read`).
    .filter((r) => r !== '');

  it('a plain rule grants read exactly where matchTopic(rule, topic) holds', () => {
    fc.assert(
      fc.property(ruleArb, topicArb, (rule, topic) => {
        expect(acl(`topic read ${rule}\n`).allowed('read', anon, topic)).toBe(matchTopic(rule, topic));
      }),
      { numRuns: 3000 },
    );
  });

  it('a %c pattern matches as the rule with the client id written in', () => {
    fc.assert(
      fc.property(ruleArb, topicArb, fc.constantFrom('a', 'b', 'ab'), (rule, topic, id) => {
        const who = { clientId: id, username: undefined };
        const withId = rule.replace(/(^|\/)a(?=\/|$)/, '$1%c');
        const expected = matchTopic(withId.replace('%c', id), topic);
        expect(acl(`pattern read ${withId}\n`).allowed('read', who, topic)).toBe(expected);
      }),
      { numRuns: 3000 },
    );
  });
});
