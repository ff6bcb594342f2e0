/** The `topics:` section: where readings go and how their payload is written. */
import { topicNameProblem } from '@mqtt-edge/codec';
import type { Reader } from './config-reader.ts';

export type PayloadFormat = 'json' | 'cbor' | 'raw';

export interface TopicsConfig {
  prefix: string;
  /** Template for readings: `{prefix}`, `{device}`, `{sensor}`. */
  reading: string;
  payload: PayloadFormat;
}

export function readTopicsSection(r: Reader, v: unknown): TopicsConfig {
  const t = r.object('topics', v, ['prefix', 'reading', 'payload']) ?? {};
  const prefix = r.string('topics.prefix', t.prefix) ?? 'sensors';
  const pp = topicNameProblem(prefix);
  if (pp !== null) r.problem('topics.prefix', pp);
  else if (/[+#]/.test(prefix)) r.problem('topics.prefix', 'must not contain the wildcards + or #');
  else if (prefix.endsWith('/')) r.problem('topics.prefix', 'must not end with /');
  const reading = r.string('topics.reading', t.reading) ?? '{prefix}/{device}/{sensor}';
  const tp = templateProblem(reading);
  if (tp !== undefined) r.problem('topics.reading', tp);
  return {
    prefix,
    reading,
    payload: r.oneOf('topics.payload', t.payload, ['json', 'cbor', 'raw'] as const, 'json'),
  };
}

/** Replaces `{prefix}`, `{device}`, `{sensor}`; anything else in braces is an error at load time. */
export function templateProblem(template: string): string | undefined {
  const names = [...template.matchAll(/\{([^}]*)\}/g)].map((m) => m[1]);
  for (const n of names) {
    if (n !== 'prefix' && n !== 'device' && n !== 'sensor')
      return `unknown placeholder {${n}}: use {prefix}, {device}, {sensor}`;
  }
  if (!names.includes('device') || !names.includes('sensor'))
    return 'must contain {device} and {sensor} (or readings of different devices or sensors share a topic)';
  const sample = template.replaceAll('{prefix}', 'p').replaceAll('{device}', 'd').replaceAll('{sensor}', 's');
  if (/[+#]/.test(sample)) return 'must not contain the wildcards + or #';
  const p = topicNameProblem(sample);
  return p === null ? undefined : p;
}
