/**
 * docs/mosquitto-differences.md from differences.ts. `npm run docs:differences` writes it; the
 * differential test checks that the file is what this renders.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DIFFERENCES, type Difference, type DifferenceStatus } from './differences.ts';

export const DOC_PATH = fileURLToPath(new URL('../../docs/mosquitto-differences.md', import.meta.url));

const SECTIONS: Array<[DifferenceStatus, string, string]> = [
  [
    'deliberate',
    'Deliberate differences',
    'broker-lite answers otherwise on purpose; the reason is given with each.',
  ],
];

function entry(d: Difference): string[] {
  const out = [`### ${d.title}`, '', `\`${d.id}\`. ${d.reason}`, ''];
  const p = d.property;
  if (p !== undefined) {
    out.push(
      `- Where: property \`${p.name}\` of ${p.packets.map((x) => x.toUpperCase()).join(', ')} (left out of every comparison)`,
      `- Mosquitto: ${p.mosquitto}`,
      `- broker-lite: ${p.brokerLite}`,
      '',
    );
  }
  for (const s of d.scenarios ?? []) {
    out.push(`Scenario \`${s.id}\`:`, '', '```diff');
    for (const l of s.mosquitto) out.push(`- mosquitto    ${l}`);
    for (const l of s.brokerLite) out.push(`+ broker-lite  ${l}`);
    out.push('```', '');
  }
  return out;
}

export function renderDifferences(list: readonly Difference[]): string {
  const out = [
    '# broker-lite and Mosquitto: the differences',
    '',
    '<!-- Rendered from test/differential/differences.ts by `npm run docs:differences`; edit that file. -->',
    '',
    'The differential suite (`test/differential.test.ts`, described in `test/README.md`) runs each',
    'scenario (a mosquitto.conf with its password and ACL files, and a script of MQTT 3.1.1 and 5.0',
    "client actions) against Debian's Mosquitto 2.0 and against broker-lite, and compares what the",
    'clients observe: CONNACK, SUBACK, UNSUBACK and PUBACK/PUBREC/PUBCOMP reason codes, which',
    'messages arrive where with which QoS, retain flag and properties, DISCONNECTs and closes, and',
    'the `$SYS` topics present. Everything not listed here is the same; the suite fails on any',
    'other difference, and on an entry below that no longer shows.',
    '',
    'Transcript lines read `STEP CLIENT: OBSERVATION`; the lines shown are those only one broker',
    'produced.',
    '',
  ];
  for (const [status, heading, intro] of SECTIONS) {
    const items = list.filter((d) => d.status === status);
    out.push(`## ${heading}`, '', intro, '');
    if (items.length === 0) out.push('None.', '');
    for (const d of items) out.push(...entry(d));
  }
  return `${out.join('\n').trimEnd()}\n`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(DOC_PATH, renderDifferences(DIFFERENCES));
  process.stdout.write(`wrote ${DOC_PATH}\n`);
}
