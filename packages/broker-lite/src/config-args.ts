import { resolve } from 'node:path';
import { ConfigError } from './config-error.ts';

/**
 * The values of one mosquitto.conf line, read the same way by the general keys (config.ts) and
 * the bridge keys (config-bridge.ts): each reader takes the words after the key and returns the
 * value, or throws a ConfigError naming the file, line and key.
 */

/** Where a line stands: for errors, and `dir` for relative paths (the file's own directory). */
export interface ConfigCtx {
  file: string;
  line: number;
  key: string;
  dir: string;
}

export function fail(ctx: ConfigCtx, problem: string): never {
  throw new ConfigError(ctx.file, ctx.line, ctx.key, problem);
}

export function one(ctx: ConfigCtx, args: string[], what: string): string {
  if (args.length === 0) fail(ctx, `missing value (expected ${what})`);
  if (args.length > 1)
    fail(ctx, `expected one value (${what}), got ${args.length}: '${args.join(' ').slice(0, 80)}'`);
  return args[0];
}

export function bool(ctx: ConfigCtx, args: string[]): boolean {
  const v = one(ctx, args, 'true or false');
  if (v === 'true') return true;
  if (v === 'false') return false;
  fail(ctx, `invalid value '${v.slice(0, 40)}' (expected true or false)`);
}

/** One word as an integer in min..max (a port in `host:port`, a QoS in a topic line). */
export function intOf(ctx: ConfigCtx, v: string, min: number, max: number): number {
  if (!/^-?[0-9]{1,12}$/.test(v))
    fail(ctx, `invalid value '${v.slice(0, 40)}' (expected an integer ${min}..${max})`);
  const n = Number(v);
  if (n < min || n > max) fail(ctx, `value ${n} is out of range (expected ${min}..${max})`);
  return n;
}

export function int(ctx: ConfigCtx, args: string[], min: number, max: number): number {
  return intOf(ctx, one(ctx, args, `an integer ${min}..${max}`), min, max);
}

/** Paths may hold spaces: Mosquitto takes the rest of the line. Relative to the file's directory. */
export function path(ctx: ConfigCtx, args: string[]): string {
  if (args.length === 0) fail(ctx, 'missing value (expected a path)');
  return resolve(ctx.dir, args.join(' '));
}
