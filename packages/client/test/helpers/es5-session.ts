/**
 * Drives a ClientSession that lives inside a small engine (Duktape, QuickJS) through
 * fixtures/es5-client-harness.js, and (optionally) the same harness on the Node core in step:
 * every command's answer from the engine must equal the Node core's, byte for byte.
 */
import { readFileSync } from 'node:fs';
import * as Codec from '@mqtt-edge/codec';
import { type Packet, PacketParser, type ProtocolVersion } from '@mqtt-edge/codec';
import { expect } from 'vitest';
import type { Engine } from '../../../../test/helpers/engines.ts';
import * as Core from '../../src/core/index.ts';

export const CLIENT_HARNESS = readFileSync(
  new URL('../fixtures/es5-client-harness.js', import.meta.url),
  'utf8',
);

export interface Step {
  /** Bytes the session wrote (hex) and the packets they hold (decoded by the Node codec). */
  out: string;
  packets: Packet[];
  // biome-ignore lint/suspicious/noExplicitAny: events as JSON, checked field by field
  events: any[];
  state: string;
  deadline: number | null;
  // biome-ignore lint/suspicious/noExplicitAny: the command's own answer
  result: any;
}

/** The harness on the Node core (the sources), in this realm. */
function nodeHarness(): (line: string) => string {
  let printed: string[] = [];
  const h = new Function('MqttClientCore', 'print', `${CLIENT_HARNESS}\nreturn H;`)(
    { ...Codec, ...Core },
    (s: string) => printed.push(s),
  ) as { run(name: string, args: string): void };
  return (line) => {
    printed = [];
    const m = /^H\.run\('(\w+)', (.*)\)$/.exec(line);
    if (m === null) throw new Error(`not a harness call: ${line}`);
    h.run(m[1], JSON.parse(m[2]));
    return printed[0].slice(2);
  };
}

export class EngineSession {
  private parser: PacketParser;
  private readonly reference: ((line: string) => string) | null;

  constructor(
    private readonly engine: Engine,
    private readonly version: ProtocolVersion,
    withReference: boolean,
  ) {
    this.parser = new PacketParser({ protocolVersion: version });
    this.reference = withReference ? nodeHarness() : null;
  }

  // biome-ignore lint/suspicious/noExplicitAny: JSON arguments of the harness's commands
  async cmd(name: string, args: Record<string, any> = {}, compare = true): Promise<Step> {
    const line = `H.run('${name}', ${JSON.stringify(JSON.stringify(args))})`;
    const lines = await this.engine.run(line);
    expect(lines.length, `${name} answered`).toBe(1);
    const answer = JSON.parse(lines[0]);
    expect(answer.harnessError, answer.stack).toBeUndefined();
    if (this.reference !== null && compare)
      expect(answer, `${this.engine.name} and the Node core after ${name}`).toEqual(
        JSON.parse(this.reference(line)),
      );
    if (name === 'open') this.parser = new PacketParser({ protocolVersion: this.version });
    const packets: Packet[] = [];
    if (answer.out !== '') this.parser.push(Buffer.from(answer.out, 'hex'), (p) => packets.push(p));
    return { ...answer, packets };
  }
}
