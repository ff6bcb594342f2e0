/**
 * The config file's text: yaml, loaded only when needed, a strict JSON fast path, and the line
 * a key path stands on, for problems.
 */
import { createRequire } from 'node:module';
import type { Document, LineCounter } from 'yaml';

type Yaml = typeof import('yaml');
let yamlModule: Yaml | undefined;
/**
 * yaml is loaded only for a YAML config (or to put line numbers on a JSON config's problems):
 * it costs ~8 MB of RSS for the life of the process, on a gateway where memory is the budget.
 */
export function yaml(): Yaml {
  yamlModule ??= createRequire(import.meta.url)('yaml') as Yaml;
  return yamlModule;
}

/**
 * A JSON config whose keys are all unique, parsed without yaml; undefined when the text is not
 * JSON or repeats a key (the YAML path then reports it, with its line).
 */
export function parseStrictJson(text: string): unknown {
  if (!/^\s*\{/.test(text)) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  return hasDuplicateKeys(text) ? undefined : raw;
}

/** Scans valid JSON for a key given twice in one object (JSON.parse silently keeps the last). */
function hasDuplicateKeys(json: string): boolean {
  const stack: Array<Set<string> | null> = [];
  let expectKey = false;
  for (let i = 0; i < json.length; i++) {
    const ch = json[i];
    if (ch === '{') {
      stack.push(new Set());
      expectKey = true;
    } else if (ch === '[') {
      stack.push(null);
      expectKey = false;
    } else if (ch === '}' || ch === ']') {
      stack.pop();
      expectKey = false;
    } else if (ch === ',') {
      expectKey = stack[stack.length - 1] !== null;
    } else if (ch === '"') {
      let j = i + 1;
      while (json[j] !== '"') j += json[j] === '\\' ? 2 : 1;
      if (expectKey) {
        const key = JSON.parse(json.slice(i, j + 1)) as string;
        const keys = stack[stack.length - 1];
        if (keys?.has(key)) return true;
        keys?.add(key);
        expectKey = false;
      }
      i = j;
    }
  }
  return false;
}

/** The line of `keyPath` (`serial[0].baud`), or of the deepest part of it that exists. */
export function lineOf(doc: Document.Parsed, lc: LineCounter, keyPath: string): number | undefined {
  const { isMap, isSeq } = yaml();
  const parts: Array<string | number> = [];
  for (const m of keyPath.matchAll(/([^.[\]]+)|\[(\d+)\]/g))
    parts.push(m[2] !== undefined ? Number(m[2]) : m[1]);
  // The deepest node that exists: a missing key points at its parent mapping.
  for (let n = parts.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(parts.slice(0, n), true);
    if (node === undefined || node === null) continue;
    // For a key that exists, prefer the key's own position.
    if (
      n > 0 &&
      (isMap(doc.getIn(parts.slice(0, n - 1), true)) || isSeq(doc.getIn(parts.slice(0, n - 1), true)))
    ) {
      const parent = doc.getIn(parts.slice(0, n - 1), true);
      if (isMap(parent)) {
        const pair = parent.items.find((it) => {
          const k = it.key as { value?: unknown } | null;
          return k !== null && typeof k === 'object' && k.value === parts[n - 1];
        });
        const range = (pair?.key as { range?: [number, number, number] } | undefined)?.range;
        if (range) return lc.linePos(range[0]).line;
      }
    }
    const range = (node as { range?: [number, number, number] }).range;
    if (range) return lc.linePos(range[0]).line;
  }
  return undefined;
}
