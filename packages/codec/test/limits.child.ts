/**
 * Run by limits.test.ts in its own `node --expose-gc` process: decodes hostile packets and
 * prints, as one JSON line, how much the heap grew (after a full GC) per wire byte.
 */
import { MqttError, PacketParser } from '../src/index.ts';
import { connectWithUserProperties } from './hostile-packets.ts';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');

/** JS heap plus memory outside it (array buffers), after a full GC. */
function heap(): number {
  gc?.();
  gc?.();
  return used();
}

function used(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

const mode = process.argv[2];
const result: Record<string, number | string> = {};
if (mode === 'hostile') {
  // One CONNECT of N MB of empty user properties, streamed in 64 KiB chunks as a socket would.
  const mb = Number(process.argv[3]);
  const bytes = connectWithUserProperties(Math.floor((mb * 1024 * 1024) / 5));
  const before = heap();
  const heapBefore = process.memoryUsage().heapUsed;
  const parser = new PacketParser();
  let kept: unknown = null;
  let error = '';
  let peak = 0;
  let peakHeap = 0;
  const sample = (): void => {
    const m = process.memoryUsage();
    peak = Math.max(peak, m.heapUsed + m.external);
    peakHeap = Math.max(peakHeap, m.heapUsed);
  };
  try {
    for (let i = 0; i < bytes.length; i += 65_536) {
      parser.push(bytes.subarray(i, i + 65_536), (packet) => {
        kept = packet;
      });
      sample();
    }
  } catch (err) {
    error = err instanceof MqttError ? `${err.code} 0x${err.reasonCode.toString(16)}` : String(err);
  }
  sample();
  result.wireBytes = bytes.length;
  result.error = error;
  result.heldBytes = heap() - before;
  /** JS heap and array buffers together: the parser's buffer (and its garbage) included. */
  result.peakBytes = peak - before;
  /** JS heap only: the decoded objects. */
  result.peakHeapBytes = peakHeap - heapBefore;
  result.kept = kept === null ? 0 : 1;
} else if (mode === 'legit') {
  // Many decoded packets at the limit of user properties, all kept alive: heap per wire byte.
  const pairs = Number(process.argv[3]);
  const count = Number(process.argv[4]);
  const bytes = connectWithUserProperties(pairs);
  const parser = new PacketParser();
  const kept: unknown[] = [];
  const before = heap();
  for (let i = 0; i < count; i++) {
    // a copy each time: the decoded packet may keep views into its own input only
    parser.push(bytes.slice(), (packet) => kept.push(packet));
  }
  const after = heap();
  result.wireBytes = bytes.length * count;
  result.heldBytes = after - before;
  result.packets = kept.length;
}
process.stdout.write(`${JSON.stringify(result)}\n`);
