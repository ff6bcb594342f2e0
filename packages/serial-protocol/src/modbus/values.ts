/**
 * Numbers in Modbus registers (issue 20.1). A register is 16 bits, big-endian on the wire; 32-bit
 * values take two, and devices disagree on which comes first: `big` (the high word first, "ABCD",
 * what the spec's byte order suggests) or `little` (the low word first, "CDAB", common in meters
 * and PLCs).
 */

export type RegisterType = 'int16' | 'uint16' | 'int32' | 'uint32' | 'float32';
export type WordOrder = 'big' | 'little';

export const REGISTER_TYPES: readonly RegisterType[] = ['int16', 'uint16', 'int32', 'uint32', 'float32'];

/** Registers a value of `type` takes. */
export function registerCount(type: RegisterType): 1 | 2 {
  return type === 'int16' || type === 'uint16' ? 1 : 2;
}

const scratch = new DataView(new ArrayBuffer(4));

/** The value in `words[at..]` (1 or 2 registers, 0..65535 each). */
export function decodeRegisters(
  words: ArrayLike<number>,
  type: RegisterType,
  order: WordOrder,
  at = 0,
): number {
  if (type === 'int16') return (words[at] << 16) >> 16;
  if (type === 'uint16') return words[at];
  const hi = order === 'big' ? words[at] : words[at + 1];
  const lo = order === 'big' ? words[at + 1] : words[at];
  scratch.setUint16(0, hi);
  scratch.setUint16(2, lo);
  if (type === 'int32') return scratch.getInt32(0);
  if (type === 'uint32') return scratch.getUint32(0);
  return scratch.getFloat32(0);
}

const RANGES: Record<Exclude<RegisterType, 'float32'>, [number, number]> = {
  int16: [-0x8000, 0x7fff],
  uint16: [0, 0xffff],
  int32: [-0x8000_0000, 0x7fff_ffff],
  uint32: [0, 0xffff_ffff],
};

/** The smallest and largest value of a type (float32: its largest finite values). */
export function registerRange(type: RegisterType): [number, number] {
  if (type === 'float32') return [-3.4028234663852886e38, 3.4028234663852886e38];
  return RANGES[type];
}

/** Why `value` does not fit `type` (undefined: it does). */
export function registerValueProblem(value: number, type: RegisterType): string | undefined {
  const [min, max] = registerRange(type);
  if (!Number.isFinite(value)) return 'not a finite number';
  if (type !== 'float32' && !Number.isInteger(value)) return `${type} holds whole numbers only`;
  if (value < min || value > max) return `${type} holds ${min}..${max}`;
  return undefined;
}

/** The registers that hold `value` as `type`. RangeError when it does not fit. */
export function encodeRegisters(value: number, type: RegisterType, order: WordOrder): number[] {
  const problem = registerValueProblem(value, type);
  if (problem !== undefined) throw new RangeError(`${value}: ${problem}`);
  if (type === 'int16' || type === 'uint16') return [value & 0xffff];
  if (type === 'float32') scratch.setFloat32(0, value);
  else if (type === 'int32') scratch.setInt32(0, value);
  else scratch.setUint32(0, value);
  const hi = scratch.getUint16(0);
  const lo = scratch.getUint16(2);
  return order === 'big' ? [hi, lo] : [lo, hi];
}
