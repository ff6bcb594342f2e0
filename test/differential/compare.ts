/**
 * Comparing two transcripts of one scenario, and explaining what differs by differences.ts: a
 * property entry masks one property of one packet type everywhere; a scenario entry accounts
 * for exact lines of one scenario. What no entry explains is a failure; an entry that explains
 * nothing any more is stale, a failure too (the list stays true).
 */
import type { Difference } from './differences.ts';

export interface LineDiff {
  /** Lines only Mosquitto's transcript has (multiset difference). */
  mosquitto: string[];
  /** Lines only broker-lite's has. */
  brokerLite: string[];
}

/** Multiset difference both ways, in each transcript's order. */
export function diffLines(mosquitto: readonly string[], brokerLite: readonly string[]): LineDiff {
  const count = new Map<string, number>();
  for (const l of brokerLite) count.set(l, (count.get(l) ?? 0) + 1);
  const onlyM: string[] = [];
  for (const l of mosquitto) {
    const n = count.get(l) ?? 0;
    if (n > 0) count.set(l, n - 1);
    else onlyM.push(l);
  }
  const onlyL: string[] = [];
  for (const l of brokerLite) {
    const n = count.get(l) ?? 0;
    if (n > 0) {
      onlyL.push(l);
      count.set(l, n - 1);
    }
  }
  return { mosquitto: onlyM, brokerLite: onlyL };
}

/** `N client: packet ... {json}` -> the packet's word and its properties (or undefined). */
function splitProps(line: string): { head: string; kind: string; props?: Record<string, unknown> } {
  const colon = line.indexOf(': ');
  const kind = colon < 0 ? '' : line.slice(colon + 2).split(' ', 1)[0];
  // The properties are the line's last token, a JSON object; a payload may hold ' {' too.
  for (let at = line.lastIndexOf(' {'); at > colon; at = line.lastIndexOf(' {', at - 1)) {
    try {
      const props = JSON.parse(line.slice(at + 1)) as unknown;
      if (props !== null && typeof props === 'object' && !Array.isArray(props))
        return { head: line.slice(0, at), kind, props: props as Record<string, unknown> };
    } catch {
      // Not the start of the properties: look further left.
    }
  }
  return { head: line, kind };
}

/** The line without the properties the entries mask (for its packet type). */
export function maskLine(line: string, masks: readonly Difference[]): string {
  const { head, kind, props } = splitProps(line);
  if (props === undefined) return line;
  let changed = false;
  for (const m of masks) {
    const p = m.property;
    if (p === undefined || !p.packets.includes(kind) || !(p.name in props)) continue;
    const value = JSON.stringify(props[p.name]);
    if (p.values !== undefined && !p.values.some((v) => JSON.stringify(v) === value)) continue;
    delete props[p.name];
    changed = true;
  }
  if (!changed) return line;
  return Object.keys(props).length === 0 ? head : `${head} ${JSON.stringify(props)}`;
}

export interface Explained {
  /** What no entry explains: the test fails on these. */
  unexplained: LineDiff;
  /** Entries (ids) that explained something here. */
  used: string[];
}

/** Removes `lines` from `from` (each once); false when one is missing. */
function takeAll(from: string[], lines: readonly string[]): boolean {
  const copy = [...from];
  for (const l of lines) {
    const i = copy.indexOf(l);
    if (i < 0) return false;
    copy.splice(i, 1);
  }
  from.splice(0, from.length, ...copy);
  return true;
}

export function explain(
  scenario: string,
  mosquitto: readonly string[],
  brokerLite: readonly string[],
  differences: readonly Difference[],
): Explained {
  const masks = differences.filter((d) => d.property !== undefined);
  const used: string[] = [];
  // A property entry is used where the scenario differs without its mask and not with all masks
  // but it applied: tried one by one, each is credited where it alone removes some difference.
  const all = diffLines(
    mosquitto.map((l) => maskLine(l, masks)),
    brokerLite.map((l) => maskLine(l, masks)),
  );
  for (const m of masks) {
    const others = masks.filter((x) => x !== m);
    const without = diffLines(
      mosquitto.map((l) => maskLine(l, others)),
      brokerLite.map((l) => maskLine(l, others)),
    );
    if (without.mosquitto.length + without.brokerLite.length > all.mosquitto.length + all.brokerLite.length)
      used.push(m.id);
  }
  for (const d of differences) {
    for (const s of d.scenarios ?? []) {
      if (s.id !== scenario) continue;
      const m = [...all.mosquitto];
      const l = [...all.brokerLite];
      if (takeAll(m, s.mosquitto) && takeAll(l, s.brokerLite)) {
        all.mosquitto = m;
        all.brokerLite = l;
        used.push(d.id);
      }
    }
  }
  return { unexplained: all, used };
}

/** A readable report of a scenario's two transcripts and what is unexplained. */
export function report(
  scenario: string,
  mosquitto: readonly string[],
  brokerLite: readonly string[],
  unexplained: LineDiff,
): string {
  const out = [`scenario ${scenario}: differences no entry in test/differential/differences.ts explains`];
  for (const l of unexplained.mosquitto) out.push(`  - mosquitto:   ${l}`);
  for (const l of unexplained.brokerLite) out.push(`  + broker-lite: ${l}`);
  out.push('', '--- mosquitto transcript', ...mosquitto, '', '--- broker-lite transcript', ...brokerLite);
  return out.join('\n');
}
