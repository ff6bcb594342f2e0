/** `mqtt-edge-agent`: run (`-c FILE`), `check -c FILE`, `status [-c FILE | --state-dir DIR]`. */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Agent } from './agent.ts';
import { type AgentConfig, ConfigError, configDocument, loadConfig, redacted } from './config.ts';
import { createLogger, type Logger } from './log.ts';
import { formatStatus, readStatus } from './status.ts';

const HELP = `mqtt-edge-agent: serial sensors onto MQTT, through a durable on-disk queue

Usage:
  mqtt-edge-agent -c agent.yaml           run the agent (YAML or JSON config)
  mqtt-edge-agent check -c agent.yaml     validate a config, print it resolved (password masked)
  mqtt-edge-agent status -c agent.yaml    ports, broker link, queue depth of the running agent
  mqtt-edge-agent status --state-dir DIR  the same, by the directory of status.json

Options:
  -c, --config FILE    config file
      --state-dir DIR  (status) where the agent writes status.json (agent.statusDir)
      --json           (status, check) machine-readable output
  -h, --help

Environment:
  MQTT_EDGE_PASSWORD   broker password (overrides the file; name set by mqtt.passwordEnv)
  MQTT_EDGE_USERNAME   broker user name when the file has none
  STATE_DIRECTORY      default state directory (systemd's StateDirectory= sets it)
  RUNTIME_DIRECTORY    default directory of status.json (systemd's RuntimeDirectory= sets it)

Signals:
  SIGHUP               reload the config (ports, topics, MQTT settings, intervals, log level);
                       one that does not validate is refused and logged, the running one stays
  SIGTERM, SIGINT      stop: finish storing, say offline, close the queue

Exit codes: 0 ok, 1 runtime failure, 2 usage or config error, 3 (status) agent not running.
Reference: packages/agent/README.md`;

function out(s: string): void {
  process.stdout.write(`${s}\n`);
}
function err(s: string): void {
  process.stderr.write(`${s}\n`);
}

function load(file: string | undefined): AgentConfig | number {
  if (file === undefined) {
    err('mqtt-edge-agent: -c FILE is required (see --help)');
    return 2;
  }
  try {
    return loadConfig(file);
  } catch (e) {
    if (e instanceof ConfigError) {
      err(e.message);
      return 2;
    }
    throw e;
  }
}

export async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
        'state-dir': { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    err(`mqtt-edge-agent: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  const v = parsed.values as { config?: string; 'state-dir'?: string; json?: boolean; help?: boolean };
  if (v.help) {
    out(HELP);
    return 0;
  }
  const [command, ...rest] = parsed.positionals;
  if (
    rest.length > 0 ||
    (command !== undefined && command !== 'check' && command !== 'status' && command !== 'run')
  ) {
    err(`mqtt-edge-agent: unknown command ${JSON.stringify(parsed.positionals.join(' '))} (see --help)`);
    return 2;
  }

  if (command === 'check') {
    const c = load(v.config);
    if (typeof c === 'number') return c;
    // In the file's own keys and units, so what it prints can be pasted back into the file.
    const doc = configDocument(redacted(c));
    if (v.json) out(JSON.stringify(doc, null, 2));
    else {
      out(`${v.config}: ok`);
      // yaml only here: it costs the running agent memory it does not otherwise need.
      const { stringify } = await import('yaml');
      out(stringify(doc).trimEnd());
    }
    return 0;
  }

  if (command === 'status') {
    let dir = v['state-dir'];
    let staleAfter = 10_000;
    if (dir === undefined) {
      const c = load(v.config);
      if (typeof c === 'number') return c;
      dir = c.statusDir;
      staleAfter = Math.max(10_000, 3 * c.statusIntervalMs);
    }
    let s: ReturnType<typeof readStatus>;
    try {
      s = readStatus(path.resolve(dir));
    } catch (e) {
      err(
        `mqtt-edge-agent: no status in ${dir}: ${(e as Error).message} (is the agent running with this status dir? agent.statusDir, else $RUNTIME_DIRECTORY, else agent.stateDir)`,
      );
      return 3;
    }
    const f = formatStatus(s, Date.now(), staleAfter);
    out(v.json ? JSON.stringify({ running: f.running, ...s }, null, 2) : f.text);
    return f.running ? 0 : 3;
  }

  const c = load(v.config);
  if (typeof c === 'number') return c;
  const file = v.config as string;
  const log = createLogger({ level: c.log.level, format: c.log.format, base: {} });
  // SIGHUP (systemctl reload) reloads the config; until the agent runs, a reload waits for it
  // (the default action of SIGHUP would end the process, which systemd takes for a clean exit).
  let started: (a: Agent) => void = () => undefined;
  const running = new Promise<Agent>((resolve) => {
    started = resolve;
  });
  let reloads = Promise.resolve();
  process.on('SIGHUP', () => {
    reloads = reloads.then(async () => reload(await running, file, log));
  });
  let agent: Agent;
  try {
    agent = await Agent.start({ config: c, log });
    started(agent);
  } catch (e) {
    const code = (e as { code?: string }).code;
    log.log('error', 'start-failed', {
      error: (e as Error).message,
      hint: code === 'LOCKED' ? 'another agent uses this queue directory' : undefined,
    });
    return 1;
  }
  // A failed write or fsync (a full disk) is not a reason to exit: the queue refuses readings
  // (the devices keep them), logs it, and takes them again by itself once it can write.
  const reason = await new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  log.log('info', 'signal', { signal: reason });
  // A second signal while draining: stop waiting.
  const force = () => process.exit(1);
  process.once('SIGINT', force);
  process.once('SIGTERM', force);
  await agent.stop();
  return 0;
}

/**
 * SIGHUP: the config file again. One that does not validate is refused with the problems
 * `check` prints, and the running config stays.
 */
async function reload(agent: Agent, file: string, log: Logger): Promise<void> {
  log.log('info', 'reload', { signal: 'SIGHUP', file });
  let next: AgentConfig;
  try {
    next = loadConfig(file);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    agent.counters.reloadsRefused++;
    log.log('error', 'config-reload-failed', {
      file,
      problems: e.lines,
      note: 'the running config stays; `mqtt-edge-agent check -c FILE` shows the same problems',
    });
    return;
  }
  try {
    await agent.reload(next);
  } catch (e) {
    log.log('error', 'config-reload-failed', { file, error: (e as Error).stack ?? String(e) });
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: Error) => {
    err(`mqtt-edge-agent: ${e.stack ?? e.message}`);
    process.exit(1);
  },
);
