/**
 * The `agent:` section: the agent's own id, state directory, log and timers. The id and the
 * state directory are read first: other sections derive defaults from them (the client id, the
 * queue directory, Home Assistant's node id).
 */
import os from 'node:os';
import path from 'node:path';
import { isName } from '@mqtt-edge/serial-protocol';
import { fmtMs, type Reader, show } from './config-reader.ts';
import { LOG_LEVELS, type LogLevel } from './log.ts';

export interface AgentSection {
  id: string;
  stateDir: string;
  /**
   * Where status.json is rewritten every statusInterval: systemd's RuntimeDirectory= (a tmpfs)
   * when set, so the status costs the SD card nothing; else stateDir.
   */
  statusDir: string;
  log: { level: LogLevel; format: 'auto' | 'json' | 'text' };
  /** How often the status file is rewritten. */
  statusIntervalMs: number;
  /** How often counters go to the health topic (0: never). */
  healthIntervalMs: number;
  /** How long a downlink command waits for the device's RESULT. */
  commandTimeoutMs: number;
  /**
   * The interval native devices are expected to report at when neither their HELLO (`p`) nor
   * their port says (issue 19); 0: such ports are not watched for silence.
   */
  expectedIntervalMs: number;
}

const AGENT_KEYS = [
  'id',
  'stateDir',
  'statusDir',
  'log',
  'statusInterval',
  'healthInterval',
  'commandTimeout',
  'expectedInterval',
] as const;

export function readAgentSection(r: Reader, v: unknown, env: NodeJS.ProcessEnv): AgentSection {
  const a = r.object('agent', v, AGENT_KEYS) ?? {};
  let id = r.string('agent.id', a.id) ?? defaultId();
  if (!isName(id)) {
    r.problem('agent.id', `must be 1..64 of A-Z a-z 0-9 _ . : - (it is a topic level); got ${show(id)}`);
    id = 'agent';
  }
  const stateDir = r.filePath('agent.stateDir', a.stateDir) ?? defaultStateDir(env, id);
  const statusDir =
    r.filePath('agent.statusDir', a.statusDir) ?? env.RUNTIME_DIRECTORY?.split(':')[0] ?? stateDir;
  const lg = r.object('agent.log', a.log, ['level', 'format']) ?? {};
  const log = {
    level: r.oneOf('agent.log.level', lg.level, LOG_LEVELS, 'info'),
    format: r.oneOf('agent.log.format', lg.format, ['auto', 'json', 'text'] as const, 'auto'),
  };
  const statusIntervalMs = r.duration('agent.statusInterval', a.statusInterval, 100, 3_600_000, 2000);
  const healthIntervalMs = r.duration('agent.healthInterval', a.healthInterval, 0, 86_400_000, 30_000);
  if (healthIntervalMs > 0 && healthIntervalMs < 1000)
    r.problem('agent.healthInterval', 'must be 0 (off) or at least 1s');
  const commandTimeoutMs = r.duration('agent.commandTimeout', a.commandTimeout, 100, 600_000, 5000);
  const expectedIntervalMs = r.interval('agent.expectedInterval', a.expectedInterval) ?? 60_000;
  return {
    id,
    stateDir,
    statusDir,
    log,
    statusIntervalMs,
    healthIntervalMs,
    commandTimeoutMs,
    expectedIntervalMs,
  };
}

/** The section in the file's own keys and units. */
export function agentDocument(c: AgentSection): Record<string, unknown> {
  return {
    id: c.id,
    stateDir: c.stateDir,
    statusDir: c.statusDir,
    log: { ...c.log },
    statusInterval: fmtMs(c.statusIntervalMs),
    healthInterval: fmtMs(c.healthIntervalMs),
    commandTimeout: fmtMs(c.commandTimeoutMs),
    expectedInterval: fmtMs(c.expectedIntervalMs),
  };
}

function defaultStateDir(env: NodeJS.ProcessEnv, id: string): string {
  // systemd's StateDirectory= sets STATE_DIRECTORY; otherwise the XDG state home.
  if (env.STATE_DIRECTORY) return env.STATE_DIRECTORY.split(':')[0];
  const base = env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state');
  return path.join(base, 'mqtt-edge-agent', id);
}

function defaultId(): string {
  const h = os
    .hostname()
    .replace(/[^A-Za-z0-9_.:-]/g, '-')
    .slice(0, 48);
  return isName(h) ? h : 'agent';
}
