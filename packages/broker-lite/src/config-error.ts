/**
 * A configuration problem: which file, which line (1-based; 0 when it concerns the whole file,
 * e.g. it cannot be read), which key, and what is wrong. The message reads
 * `FILE:LINE: KEY: what`, the way compilers report, so editors can jump to it.
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly file: string,
    readonly line: number,
    readonly key: string,
    readonly problem: string,
  ) {
    super(`${line > 0 ? `${file}:${line}` : file}: ${key ? `${key}: ` : ''}${problem}`);
  }
}

/** Something the broker accepts but does not act on, or acts on differently from Mosquitto. */
export interface ConfigWarning {
  file: string;
  line: number;
  key: string;
  message: string;
}

export function formatWarning(w: ConfigWarning): string {
  return `${w.line > 0 ? `${w.file}:${w.line}` : w.file}: ${w.key ? `${w.key}: ` : ''}${w.message}`;
}
