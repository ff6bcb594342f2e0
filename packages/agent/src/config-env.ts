/**
 * `${NAME}` and `${NAME:-default}` in the agent's config (issue 20.4): secrets and paths from
 * systemd's `Environment=`/`EnvironmentFile=`, a container's environment, or a shell. Replaced in
 * string values after the file is parsed, so a value from the environment is text and never YAML
 * or JSON: quotes, colons, `#` or `${` in it stay as they are. A value that is one reference and
 * nothing else, and reads as a number or true/false, becomes that number or boolean (`baud:
 * ${BAUD}`). `$${` is a literal `${`; any other `$` is text. An unset variable without a default
 * is an error naming the key and the variable; `:-` also replaces a variable set to ''.
 */
import { type ConfigProblem, join } from './config-reader.ts';

const NAME_AND_DEFAULT = /^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$/s;
const WHOLE_REFERENCE = /^\$\{[^}]*\}$/;
const NUMBER = /^-?\d+(?:\.\d+)?$/;

/** The raw document with every reference replaced; what could not be is added to `problems`. */
export function expandEnv(raw: unknown, env: NodeJS.ProcessEnv, problems: ConfigProblem[], p = ''): unknown {
  if (typeof raw === 'string') return raw.includes('$') ? expandString(raw, env, problems, p) : raw;
  if (Array.isArray(raw)) return raw.map((v, i) => expandEnv(v, env, problems, join(p, i)));
  if (typeof raw === 'object' && raw !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(raw)) out[k] = expandEnv(v, env, problems, join(p, k));
    return out;
  }
  return raw;
}

function expandString(s: string, env: NodeJS.ProcessEnv, problems: ConfigProblem[], p: string): unknown {
  let out = '';
  let i = 0;
  while (i < s.length) {
    const at = s.indexOf('$', i);
    if (at < 0) {
      out += s.slice(i);
      break;
    }
    out += s.slice(i, at);
    if (s.startsWith('$${', at)) {
      out += '${';
      i = at + 3;
      continue;
    }
    if (s[at + 1] !== '{') {
      out += '$';
      i = at + 1;
      continue;
    }
    const end = s.indexOf('}', at + 2);
    const m = end < 0 ? null : NAME_AND_DEFAULT.exec(s.slice(at + 2, end));
    if (m === null) {
      const shown = end < 0 ? s.slice(at) : s.slice(at, end + 1);
      problems.push({
        path: p,
        message: `malformed reference ${shown}: write \${NAME} or \${NAME:-default} (NAME: letters, digits, _), or $\${ for a literal \${`,
      });
      return s;
    }
    const [, name, dflt] = m;
    const value = env[name];
    if (value !== undefined && (value !== '' || dflt === undefined)) out += value;
    else if (dflt !== undefined) out += dflt;
    else {
      problems.push({
        path: p,
        message: `environment variable ${name} is not set (write \${${name}:-default} for a default)`,
      });
      return s;
    }
    i = end + 1;
  }
  if (WHOLE_REFERENCE.test(s)) {
    if (NUMBER.test(out)) return Number(out);
    if (out === 'true' || out === 'false') return out === 'true';
  }
  return out;
}
