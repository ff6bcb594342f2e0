/**
 * The level names every mqtt-edge process writes: syslog's (RFC 5424) from error down to debug,
 * so that a line's level is also the priority journald files it under (`journalctl -p warning`
 * shows error and warning lines).
 */
export type Level = 'error' | 'warning' | 'notice' | 'info' | 'debug';

/** Most severe first. */
export const LEVELS: readonly Level[] = ['error', 'warning', 'notice', 'info', 'debug'];

/** syslog priority: smaller is more severe. */
export const PRIORITY: Readonly<Record<Level, number>> = {
  error: 3,
  warning: 4,
  notice: 5,
  info: 6,
  debug: 7,
};

/**
 * The other names call sites use for the same levels: `warn` (the agent, firmware-sim, most
 * Node loggers), `information` (Mosquitto's log_type), `err` (journalctl's).
 */
const ALIASES: Readonly<Record<string, Level>> = {
  error: 'error',
  err: 'error',
  warning: 'warning',
  warn: 'warning',
  notice: 'notice',
  info: 'info',
  information: 'info',
  debug: 'debug',
};

/** The level a name stands for, undefined for none. */
export function levelOf(name: string): Level | undefined {
  return Object.hasOwn(ALIASES, name) ? ALIASES[name] : undefined;
}
