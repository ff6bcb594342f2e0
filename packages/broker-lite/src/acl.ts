import { topicFilterProblem } from '@mqtt-edge/codec';
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
 * - SUBSCRIBE is checked (Mosquitto 2.0 lets every SUBSCRIBE through and filters deliveries):
 *   a filter is granted when some read rule covers all of it (the filter, read as a topic,
 *   matches the rule) and no deny rule covers all of it. Deliveries are still checked one by
 *   one, so a filter partly under a deny rule is granted and the denied topics never arrive.
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
    const m = /^(\S+)(?:\s+(.*))?$/.exec(line)!;
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
    const am = /^(read|write|readwrite|deny)(?:\s+(.*))?$/.exec(rest);
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
  if (typeof level === 'string') return level === value;
  if ('sub' in level) return (level.sub === 'u' ? who.username : who.clientId) === value;
  return (
    level.template.replace(/%([uc])/g, (_, k) => (k === 'u' ? (who.username ?? '') : who.clientId)) === value
  );
}

/** Does the rule (a filter) match the topic name? */
function matchesTopic(rule: Rule, topic: string[], who: Who): boolean {
  if (rule.wildFirst && topic[0].startsWith('$')) return false;
  const levels = rule.levels;
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i];
    if (l === '#') return true;
    if (i >= topic.length) return false;
    if (l === '+') continue;
    if (!levelMatches(l, topic[i], who)) return false;
  }
  return levels.length === topic.length;
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

const DANGEROUS = /[+#]/;

export class AclFile implements AccessControl {
  readonly rules: AclRuleSet;

  constructor(rules: AclRuleSet) {
    this.rules = rules;
  }

  static parse(text: string, file: string): AclFile {
    return new AclFile(parseAcl(text, file));
  }

  static async load(path: string): Promise<AclFile> {
    return AclFile.parse(await readBounded(path, 'acl_file', MAX_ACL_FILE_BYTES), path);
  }

  allowed(access: AclAccess, client: Who, topic: string): boolean {
    const own = client.username === undefined ? this.rules.anonymous : this.rules.users.get(client.username);
    const patterns = this.rules.patterns;
    if (patterns.length > 0) {
      if (DANGEROUS.test(client.clientId)) return false;
      if (client.username !== undefined && DANGEROUS.test(client.username)) return false;
    }
    let target = topic;
    if (access === 'subscribe' && target.startsWith('$share/')) {
      const slash = target.indexOf('/', 7);
      if (slash < 0) return false;
      target = target.slice(slash + 1);
    }
    const levels = target.split('/');
    const test = access === 'subscribe' ? coversFilter : matchesTopic;
    const applies = (r: Rule): boolean => !(r.usesUsername && client.username === undefined);
    // Deny first, over both rule lists.
    if (own) for (const r of own) if (r.deny && test(r, levels, client)) return false;
    for (const r of patterns) if (r.deny && applies(r) && test(r, levels, client)) return false;
    const grants = (r: Rule): boolean => (access === 'write' ? r.write : r.read);
    if (own) for (const r of own) if (grants(r) && test(r, levels, client)) return true;
    for (const r of patterns) if (grants(r) && applies(r) && test(r, levels, client)) return true;
    return false;
  }
}
