/** The decoded frame model. Wire layout and body keys are in docs/serial-protocol.md. */

export const FrameType = {
  Hello: 0x01,
  Data: 0x02,
  Ack: 0x03,
  Cmd: 0x04,
  Result: 0x05,
  Held: 0x06,
} as const;
export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType];

/** Largest decoded frame (type + seq + body + CRC), in bytes. Small enough for an 2 KiB-RAM MCU. */
export const MAX_FRAME_SIZE = 1024;
export const HEADER_SIZE = 3;
export const CRC_SIZE = 4;
/** Smallest decoded frame: a header, a one-byte CBOR body, a CRC. */
export const MIN_FRAME_SIZE = HEADER_SIZE + 1 + CRC_SIZE;

/** JSON-like data carried by CMD args and RESULT values (plus byte strings). */
export type Value = null | boolean | number | string | Uint8Array | Value[] | { [key: string]: Value };

export interface SensorInfo {
  name: string;
  unit?: string;
}

/**
 * A command the device describes in its HELLO, so that a user interface (Home Assistant) can
 * offer it: `button` takes no argument; `switch` a boolean; `number` a number in min..max;
 * `select` one of `options`. With `arg`, the argument goes as `{[arg]: value}`, else bare. For
 * switch, number and select, the RESULT's value (when there is one) is the state after the
 * command.
 */
export type CommandInfo =
  | { name: string; kind: 'button' }
  | { name: string; kind: 'switch'; arg?: string }
  | { name: string; kind: 'number'; arg?: string; min: number; max: number; step?: number; unit?: string }
  | { name: string; kind: 'select'; arg?: string; options: string[] };
export type CommandKind = CommandInfo['kind'];

export interface Reading {
  sensor: string;
  value: number;
  unit?: string;
  /** Device clock in milliseconds (uptime unless the device knows wall time). */
  ts?: number;
}

interface FrameBase {
  /** 16-bit sequence number. Device frames: per boot, from 0, wrapping. ACK: the seq acknowledged. */
  seq: number;
}

export interface HelloFrame extends FrameBase {
  type: 'hello';
  deviceId: string;
  firmware: string;
  bootId: number;
  sensors: SensorInfo[];
  /** The device's model (HELLO `m`, optional). */
  model?: string;
  /** The commands it describes (HELLO `c`, optional; kinds this receiver does not know are left out). */
  commands?: CommandInfo[];
  /**
   * How often it sends DATA when nothing else happens, in ms (HELLO `p`, optional, 1..2^32-1):
   * the agent calls a port silent for longer than this (issue 19).
   */
  intervalMs?: number;
  /**
   * HELLO `h`, optional, 1..65535: the device understands HELD (0x06) and its ring of
   * unacknowledged DATA holds this many frames. Absent: an older device, never sent HELD.
   */
  ringSize?: number;
}

export interface DataFrame extends FrameBase {
  type: 'data';
  bootId: number;
  readings: Reading[];
}

export interface AckFrame extends FrameBase {
  type: 'ack';
  /** The boot the acknowledged seq belongs to: a device ignores ACKs for another boot. */
  bootId: number;
}

/**
 * HELD (0x06, agent -> device): the DATA with this seq (header) of boot `bootId` is received and
 * in the agent's memory, not yet durable. The device keeps it in its ring (HELD retires nothing)
 * and does not send it again for `holdMs`; the ACK follows once it is durable. Never a promise
 * that the readings are stored: a device that hears no ACK in time sends the frame again.
 */
export interface HeldFrame extends FrameBase {
  type: 'held';
  bootId: number;
  /** Do not resend before this many ms from now (1..MAX_HOLD_MS). */
  holdMs: number;
}

/** The longest hold a HELD may ask for (1 hour): a device may cap it lower. */
export const MAX_HOLD_MS = 3_600_000;
/** HELLO `h` (ring entries) is 1..65535. */
export const MAX_RING_SIZE = 0xffff;

export interface CmdFrame extends FrameBase {
  type: 'cmd';
  id: number;
  name: string;
  args?: Value;
}

export interface ResultFrame extends FrameBase {
  type: 'result';
  id: number;
  ok: boolean;
  value?: Value;
  error?: string;
}

export type Frame = HelloFrame | DataFrame | AckFrame | CmdFrame | ResultFrame | HeldFrame;
export type FrameKind = Frame['type'];

export const TYPE_CODE: Record<FrameKind, FrameTypeCode> = {
  hello: FrameType.Hello,
  data: FrameType.Data,
  ack: FrameType.Ack,
  cmd: FrameType.Cmd,
  result: FrameType.Result,
  held: FrameType.Held,
};

export const TYPE_KIND: Readonly<Record<number, FrameKind>> = {
  [FrameType.Hello]: 'hello',
  [FrameType.Data]: 'data',
  [FrameType.Ack]: 'ack',
  [FrameType.Cmd]: 'cmd',
  [FrameType.Result]: 'result',
  [FrameType.Held]: 'held',
};
