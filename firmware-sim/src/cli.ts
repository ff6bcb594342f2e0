/** `firmware-sim`: one simulated device on a pty pair it creates (--link) or an existing tty (--port). */
import { parseArgs } from 'node:util';
import { isName } from '@mqtt-edge/serial-protocol';
import { MAX_INTERVAL_MS, MIN_INTERVAL_MS, type SimMode } from './firmware.ts';
import { createLogger, type Level } from './log.ts';
import { hasSocat } from './pty.ts';
import { FirmwareSim, type FirmwareSimOptions } from './sim.ts';
import { PortTransport, PtyTransport, type Transport } from './transport.ts';

const HELP = `firmware-sim: a simulated microcontroller speaking the mqtt-edge serial protocol

Usage:
  firmware-sim --link PATH [options]   create a socat pty pair; the agent opens PATH
  firmware-sim --port PATH [options]   open an existing tty (the other end is the agent's)

Options:
  --device-id ID        device id in HELLO (default sim-XXXX)
  --interval MS         reporting interval (default 1000; also 2s, 500ms)
  --mode MODE           native | json-lines | key-value (default native)
  --ring-size N         unacknowledged DATA kept for retransmission (default 32)
  --retransmit MS       retransmit timeout (default 1000)
  --no-held             firmware before HELD (issue 18.4): no h in HELLO, HELD skipped
  --seed N              seed for readings, boot ids and faults (printed at start)
  --firmware VERSION    firmware version in HELLO (default sim-1.0.0)
  --watchdog MS         nothing heard for MS: send HELLO again, every MS while quiet
                        (default 3 intervals, at least 3s; 0 turns it off; at most 1440m)
  --write-timeout MS    a write that finds no room in the tty for MS fails and the
                        device end is opened again (default 5s; at most 10m)
Faults:
  --garbage-rate P      probability per frame of 1..32 random bytes before it
  --bitflip-rate P      probability per frame of one flipped bit
  --drop-rate P         probability per frame of one dropped byte
  --reset-every MS      write half a DATA frame, then reset (new boot id), every MS
  --burst-every MS      send --burst-size readings at once every MS (default size 20)
  --burst-size N
  --unplug-every MS     unplug (the pty vanishes) every MS ...
  --unplug-for MS       ... for this long (default 2000)
Logging:
  --log-level LEVEL     debug | info | notice | warning (or warn) | error (default info)
  --json-logs           JSON lines even on a terminal (the shape of every mqtt-edge log:
                        time, level, msg, fields; <N> priority prefixes under journald)
  -h, --help

stdout gets one line, the path the agent should open; logs go to stderr.`;

class UsageError extends Error {}

function duration(flag: string, v: string | undefined, maxMinutes?: number): number | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(v.trim());
  if (m === null) throw new UsageError(`--${flag}: "${v}" is not a duration (e.g. 500, 500ms, 2s, 1m)`);
  const n = Number(m[1]) * (m[2] === 's' ? 1000 : m[2] === 'm' ? 60_000 : 1);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${flag}: must be positive`);
  // A timer holds at most 2^31-1 ms and fires at once beyond: bounded well within.
  if (maxMinutes !== undefined && n > maxMinutes * 60_000)
    throw new UsageError(`--${flag}: at most ${maxMinutes}m`);
  return Math.round(n);
}

function int(flag: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UsageError(`--${flag}: must be an integer ${min}..${max}`);
  return n;
}

function rate(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!(n >= 0 && n <= 1)) throw new UsageError(`--${flag}: must be a probability 0..1`);
  return n;
}

export async function main(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: argv,
      options: {
        help: { type: 'boolean', short: 'h' },
        'device-id': { type: 'string' },
        link: { type: 'string' },
        port: { type: 'string' },
        interval: { type: 'string' },
        mode: { type: 'string' },
        'ring-size': { type: 'string' },
        retransmit: { type: 'string' },
        seed: { type: 'string' },
        firmware: { type: 'string' },
        watchdog: { type: 'string' },
        'write-timeout': { type: 'string' },
        'garbage-rate': { type: 'string' },
        'bitflip-rate': { type: 'string' },
        'drop-rate': { type: 'string' },
        'reset-every': { type: 'string' },
        'burst-every': { type: 'string' },
        'burst-size': { type: 'string' },
        'unplug-every': { type: 'string' },
        'unplug-for': { type: 'string' },
        'log-level': { type: 'string' },
        'json-logs': { type: 'boolean' },
        'no-held': { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    process.stderr.write(`firmware-sim: ${(e as Error).message}\n\n${HELP}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const s = (k: string) => values[k] as string | undefined;
  let options: FirmwareSimOptions;
  let level: Level;
  let writeTimeoutMs: number | undefined;
  try {
    const deviceId =
      s('device-id') ??
      `sim-${Math.floor(Math.random() * 0x10000)
        .toString(16)
        .padStart(4, '0')}`;
    if (!isName(deviceId)) throw new UsageError('--device-id: 1..64 of A-Z a-z 0-9 _ . : -');
    const mode = (s('mode') ?? 'native') as SimMode;
    if (!['native', 'json-lines', 'key-value'].includes(mode))
      throw new UsageError('--mode: native | json-lines | key-value');
    if ((s('link') === undefined) === (s('port') === undefined))
      throw new UsageError('give exactly one of --link PATH or --port PATH');
    level = (s('log-level') ?? 'info') as Level;
    if (!['debug', 'info', 'notice', 'warn', 'warning', 'error'].includes(level))
      throw new UsageError('--log-level: debug | info | notice | warning | error');
    const interval = duration('interval', s('interval'));
    if (interval !== undefined && (interval < MIN_INTERVAL_MS || interval > MAX_INTERVAL_MS)) {
      throw new UsageError(`--interval: ${MIN_INTERVAL_MS}..${MAX_INTERVAL_MS} ms`);
    }
    options = {
      deviceId,
      mode,
      intervalMs: interval,
      ringSize: int('ring-size', s('ring-size'), 1, 4096),
      retransmitMs: duration('retransmit', s('retransmit')),
      understandsHeld: values['no-held'] !== true,
      seed: int('seed', s('seed'), 0, 0xffffffff),
      firmware: s('firmware'),
      watchdogMs: s('watchdog')?.trim() === '0' ? 0 : duration('watchdog', s('watchdog'), 1440),
      faults: {
        garbage: rate('garbage-rate', s('garbage-rate')),
        bitflip: rate('bitflip-rate', s('bitflip-rate')),
        drop: rate('drop-rate', s('drop-rate')),
      },
      resetEveryMs: duration('reset-every', s('reset-every')),
      burstEveryMs: duration('burst-every', s('burst-every')),
      burstSize: int('burst-size', s('burst-size'), 1, 10_000),
      unplugEveryMs: duration('unplug-every', s('unplug-every')),
      unplugForMs: duration('unplug-for', s('unplug-for')),
    };
    writeTimeoutMs = duration('write-timeout', s('write-timeout'), 10);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`firmware-sim: ${e.message}\n`);
    return 2;
  }
  const log = createLogger({ level, json: values['json-logs'] === true ? true : undefined, base: {} });
  let transport: Transport;
  try {
    if (s('link') !== undefined) {
      if (!hasSocat()) {
        log.log('error', 'socat-missing', {
          hint: 'apt-get install socat, or use --port with an existing tty',
        });
        return 1;
      }
      const t = await PtyTransport.create(s('link')!, undefined, { writeTimeoutMs });
      transport = t;
      process.stdout.write(`${t.agentPath}\n`);
    } else {
      transport = await PortTransport.open(s('port')!, { writeTimeoutMs });
      process.stdout.write(`${s('port')}\n`);
    }
  } catch (e) {
    log.log('error', 'open-failed', { error: (e as Error).message });
    return 1;
  }
  const sim = new FirmwareSim(transport, { ...options, log });
  sim.start();
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await sim.stop();
  log.log('info', 'stop', {
    device: options.deviceId,
    ...sim.firmware.stats,
    ...sim.stats,
    ...sim.faults.stats,
  });
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: Error) => {
    process.stderr.write(`firmware-sim: ${e.stack ?? e.message}\n`);
    process.exit(1);
  },
);
