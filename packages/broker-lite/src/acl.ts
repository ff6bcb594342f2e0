import { hasWildcard, topicFilterProblem } from '@mqtt-edge/codec';
import { ConfigError } from './config-error.ts';
import type { AccessControl, AclAccess } from './options.ts';
import { readBounded } from './passwd.ts';

/**
 * Mosquitto ACL files:
 *   topic [read|write|readwrite|deny] TOPIC     (no access word = readwrite)
 *   pattern [read|write|readwrite|deny] TOPIC   (%u = user name, %c = client id; every client)
 *   user NAME                                   (the `topic` lines below it are NAME's)
 * `topic` lines before the first `user` line are for clients without a user name. A line whose
 * first non-blank character is `#` is a comment.
 *
 * Decisions (documented in docs/broker-lite-config.md):
 * - `deny` wins: a matching deny rule refuses access whatever the order of the lines
 *   (Mosquitto's documentation promises this; 2.0.x checks rules in file order).
 * - A user's own rules and the pattern rules are one rule set; there is no precedence between
 *   them beyond deny-first.
 * - SUBSCRIBE is checked (Mosquitto 2.0 lets every SUBSCRIBE through and filters deliveries),
 *   but only refuses what could never bring a message: a filter is granted when some read rule
 *   can match a topic the filter matches (`#` under `topic read shared/#` is granted, and brings
 *   shared/... as in Mosquitto), and refused when none can or a deny rule covers all of it.
 *   Deliveries are checked one by one, so what arrives is exactly what Mosquitto delivers; only
 *   the SUBACK of a hopeless filter differs (issue 15's differential suite).
 * - A client whose user name or client id holds `+` or `#` gets nothing when pattern rules
 *   exist (Mosquitto does the same), since it could widen a `%u` / `%c` level.
 */

type Level = string | { sub: 'u' | 'c' } | { template: string };

interface Rule {
  read: boolean;
  write: boolean;
  deny: boolean;
  levels: Level[];
  /** The rule's first level is `+` or `#`: it does not reach `$SYS/...` and other `$` topics. */
  wildFirst: boolean;
  usesUsername: boolean;
  usesClientId: boolean;
  line: number;
  text: string;
}

export interface AclRuleSet {
  anonymous: Rule[];
  users: Map<string, Rule[]>;
  patterns: Rule[];
}

export const MAX_ACL_FILE_BYTES = 16 * 1024 * 1024;

function compileLevels(
  topic: string,
  pattern: boolean,
): Pick<Rule, 'levels' | 'usesUsername' | 'usesClientId'> {
  let usesUsername = false;
  let usesClientId = false;
  const levels: Level[] = topic.split('/').map((level): Level => {
    if (!pattern || !level.includes('%')) return level;
    if (level === '%u') {
      usesUsername = true;
      return { sub: 'u' };
    }
    if (level === '%c') {
      usesClientId = true;
      return { sub: 'c' };
    }
    if (level.includes('%u')) usesUsername = true;
    if (level.includes('%c')) usesClientId = true;
    return usesUsername || usesClientId ? { template: level } : level;
  });
  return { levels, usesUsername, usesClientId };
}

export function parseAcl(text: string, file: string): AclRuleSet {
  const set: AclRuleSet = { anonymous: [], users: new Map(), patterns: [] };
  let current: Rule[] = set.anonymous;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const raw = lines[i].replace(/\s+$/, '');
    const line = raw.replace(/^\s+/, '');
    if (line === '' || line.startsWith('#')) continue;
    const fail = (what: string): never => {
      throw new ConfigError(file, lineNo, 'acl_file', what);
    };
    // [\s\S], not '.': a stray \r or U+2028 inside the line must not defeat the match.
    const m = /^(\S+)(?:\s+([\s\S]*))?$/.exec(line)!;
    const keyword = m[1];
    const rest = m[2] ?? '';
    if (keyword === 'user') {
      if (rest === '') fail("'user' needs a user name");
      let rules = set.users.get(rest);
      if (rules === undefined) set.users.set(rest, (rules = []));
      current = rules;
      continue;
    }
    if (keyword !== 'topic' && keyword !== 'pattern') {
      fail(`unknown keyword '${keyword.slice(0, 40)}' (expected topic, pattern or user)`);
    }
    if (rest === '') fail(`'${keyword}' needs a topic`);
    const am = /^(read|write|readwrite|deny)(?:\s+([\s\S]*))?$/.exec(rest);
    let access = 'readwrite';
    let topic = rest;
    if (am && am[2] !== undefined) {
      access = am[1];
      topic = am[2];
    } else if (/\s/.test(rest)) {
      // Mosquitto reads the first word as the access type when there are two.
      fail(
        `invalid access type '${rest.split(/\s/)[0].slice(0, 40)}' (expected read, write, readwrite or deny)`,
      );
    }
    const problem = topicFilterProblem(topic);
    if (problem !== null) fail(`invalid topic '${topic.slice(0, 80)}': ${problem}`);
    const isPattern = keyword === 'pattern';
    const compiled = compileLevels(topic, isPattern);
    const rule: Rule = {
      read: access === 'read' || access === 'readwrite',
      write: access === 'write' || access === 'readwrite',
      deny: access === 'deny',
      wildFirst: topic.startsWith('+') || topic.startsWith('#'),
      line: lineNo,
      text: `${keyword} ${access} ${topic}`,
      ...compiled,
    };
    (isPattern ? set.patterns : current).push(rule);
  }
  return set;
}

interface Who {
  clientId: string;
  username: string | undefined;
}

function levelMatches(level: Level, value: string, who: Who): boolean {
  return (typeof level === 'string' ? level : levelValue(level, who)) === value;
}

function levelValue(level: Exclude<Level, string>, who: Who): string {
  if ('sub' in level) return (level.sub === 'u' ? who.username : who.clientId) ?? '';
  return level.template.replace(/%([uc])/g, (_, k) => (k === 'u' ? (who.username ?? '') : who.clientId));
}

/**
 * Does the rule (a filter) match the topic name? Walks the topic string in place: this runs
 * once per delivery, so it splits nothing and allocates nothing for plain rules.
 */
function matchesTopic(rule: Rule, topic: string, who: Who): boolean {
  if (rule.wildFirst && topic.charCodeAt(0) === 0x24) return false;
  const levels = rule.levels;
  const n = topic.length;
  let pos = 0;
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i];
    if (l === '#') return true;
    // `pos > n`: the topic has no level left for this one.
    if (pos > n) return false;
    let end = topic.indexOf('/', pos);
    if (end < 0) end = n;
    if (l !== '+') {
      const want = typeof l === 'string' ? l : levelValue(l, who);
      if (end - pos !== want.length || !topic.startsWith(want, pos)) return false;
    }
    pos = end + 1;
  }
  return pos === n + 1;
}

/** Does every topic the filter can match also match the rule? */
function coversFilter(rule: Rule, filter: string[], who: Who): boolean {
  if (rule.wildFirst && filter[0].startsWith('$')) return false;
  const levels = rule.levels;
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i];
    if (l === '#') return true;
    if (i >= filter.length) return false;
    const f = filter[i];
    if (f === '#') return false;
    if (l === '+') continue;
    if (f === '+') return false;
    if (!levelMatches(l, f, who)) return false;
  }
  // `a/#` also matches `a` itself; a rule `a` does not cover that.
  return levels.length === filter.length;
}

/** The rule's level as text for this client (a literal, `+` or `#` as they are). */
function levelText(level: Level, who: Who): string {
  return typeof level === 'string' ? level : levelValue(level, who);
}

/**
 * Is there a topic both the rule and the filter match? Level by level: `#` on either side
 * matches the rest (its parent level too), `+` any one level, literals must be equal; and a
 * topic starting with `$` is matched by neither side's leading wildcard.
 */
function intersects(rule: Rule, filter: string[], who: Who): boolean {
  const levels = rule.levels;
  const filterWild = filter[0] === '+' || filter[0] === '#';
  if (rule.wildFirst && !filterWild && filter[0].startsWith('$')) return false;
  if (filterWild && !rule.wildFirst && levelText(levels[0], who).startsWith('$')) return false;
  for (let i = 0; ; i++) {
    const l = levels[i];
    const f = filter[i];
    if (l === '#' || f === '#') return true;
    if (l === undefined || f === undefined) return l === f;
    if (l === '+' || f === '+') continue;
    if (!levelMatches(l, f, who)) return false;
  }
}

/** A rule list split by what each rule does, so a check visits only the rules that can decide it. */
interface Buckets {
  deny: Rule[];
  read: Rule[];
  write: Rule[];
}

function bucket(rules: Rule[]): Buckets {
  return {
    deny: rules.filter((r) => r.deny),
    read: rules.filter((r) => r.read),
    write: rules.filter((r) => r.write),
  };
}

const EMPTY: Buckets = { deny: [], read: [], write: [] };

export class AclFile implements AccessControl {
  readonly rules: AclRuleSet;
  private readonly anonymous: Buckets;
  private readonly users: Map<string, Buckets>;
  private readonly patterns: Buckets;

  constructor(rules: AclRuleSet) {
    this.rules = rules;
    this.anonymous = bucket(rules.anonymous);
    this.users = new Map([...rules.users].map(([name, list]) => [name, bucket(list)]));
    this.patterns = bucket(rules.patterns);
  }

  static parse(text: string, file: string): AclFile {
    return new AclFile(parseAcl(text, file));
  }

  static async load(path: string): Promise<AclFile> {
    return AclFile.parse(await readBounded(path, 'acl_file', MAX_ACL_FILE_BYTES), path);
  }

  allowed(access: AclAccess, client: Who, topic: string): boolean {
    const username = client.username;
    const own = (username === undefined ? this.anonymous : this.users.get(username)) ?? EMPTY;
    const patterns = this.patterns;
    if (this.rules.patterns.length > 0) {
      if (hasWildcard(client.clientId)) return false;
      if (username !== undefined && hasWildcard(username)) return false;
    }
    if (access === 'subscribe') return this.subscribeAllowed(own, client, topic);
    // Deny first, over both rule lists.
    for (const r of own.deny) if (matchesTopic(r, topic, client)) return false;
    for (const r of patterns.deny) {
      if (!(r.usesUsername && username === undefined) && matchesTopic(r, topic, client)) return false;
    }
    const grant = access === 'write' ? 'write' : 'read';
    for (const r of own[grant]) if (matchesTopic(r, topic, client)) return true;
    for (const r of patterns[grant]) {
      if (!(r.usesUsername && username === undefined) && matchesTopic(r, topic, client)) return true;
    }
    return false;
  }

  private subscribeAllowed(own: Buckets, client: Who, filter: string): boolean {
    let target = filter;
    if (target.startsWith('$share/')) {
      const slash = target.indexOf('/', 7);
      if (slash < 0) return false;
      target = target.slice(slash + 1);
    }
    const levels = target.split('/');
    const applies = (r: Rule): boolean => !(r.usesUsername && client.username === undefined);
    for (const r of own.deny) if (coversFilter(r, levels, client)) return false;
    for (const r of this.patterns.deny) if (applies(r) && coversFilter(r, levels, client)) return false;
    for (const r of own.read) if (intersects(r, levels, client)) return true;
    for (const r of this.patterns.read) if (applies(r) && intersects(r, levels, client)) return true;
    return false;
  }
}
