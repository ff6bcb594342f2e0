import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cobsEncode, encodeFrame, FrameDecoder } from '../src/index.ts';
import { concat, hex } from './arbitraries.ts';

// The hex examples in docs/serial-protocol.md are what C firmware authors copy: keep them true.
const doc = readFileSync(join(import.meta.dirname, '..', '..', '..', 'docs', 'serial-protocol.md'), 'utf8');

interface Example {
  raw: Uint8Array;
  rawLen: number;
  wire: Uint8Array;
  wireLen: number;
}

function parseExamples(md: string): Example[] {
  const out: Example[] = [];
  for (const m of md.matchAll(/```hex\n([\s\S]*?)```/g)) {
    const sections: Record<string, { len: number; bytes: number[] }> = {};
    let cur: { len: number; bytes: number[] } | undefined;
    for (const line of m[1].split('\n')) {
      const head = /^(raw|wire) \((\d+) bytes\)$/.exec(line.trim());
      if (head !== null) {
        cur = { len: Number(head[2]), bytes: [] };
        sections[head[1]] = cur;
        continue;
      }
      // Hex tokens up to the first one that is not a byte: the rest of the line is a comment.
      for (const tok of line.trim().split(/\s+/)) {
        if (!/^[0-9a-f]{2}$/.test(tok)) break;
        cur?.bytes.push(Number.parseInt(tok, 16));
      }
    }
    if (sections.raw && sections.wire) {
      out.push({
        raw: Uint8Array.from(sections.raw.bytes),
        rawLen: sections.raw.len,
        wire: Uint8Array.from(sections.wire.bytes),
        wireLen: sections.wire.len,
      });
    }
  }
  return out;
}

describe('docs/serial-protocol.md worked examples', () => {
  const examples = parseExamples(doc);
  it('finds the examples', () => {
    expect(examples.length).toBeGreaterThanOrEqual(7);
  });
  examples.forEach((ex, i) => {
    it(`example ${i + 1}: lengths, COBS, CRC, decode and canonical re-encode agree`, () => {
      expect(ex.raw.length).toBe(ex.rawLen);
      expect(ex.wire.length).toBe(ex.wireLen);
      expect(hex(concat([cobsEncode(ex.raw), new Uint8Array([0])]))).toBe(hex(ex.wire));
      const d = new FrameDecoder();
      const frames = d.push(ex.wire);
      expect(frames.length).toBe(1);
      expect(d.stats.framesOk).toBe(1);
      expect(hex(encodeFrame(frames[0]))).toBe(hex(ex.wire));
    });
  });
});
