/**
 * The agent's configuration: YAML or JSON in, a fully resolved `AgentConfig` out, or a
 * ConfigError listing every problem with its key path (`serial[1].baud`) and, when the text is
 * at hand, its line. Hand-written checks: the rules are few, and a typo'd key must be reported
 * as such (`serial[0].baudrate: unknown key; did you mean baud?`), which schema libraries do
 * poorly. Each section of the file has a reader of its own (config-agent.ts, config-serial.ts,
 * config-mqtt.ts, config-topics.ts, config-queue.ts, config-homeassistant.ts,
 * config-metrics.ts); this module composes them, in the file's order, and checks what spans
 * sections.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { type AgentSection, agentDocument, readAgentSection } from './config-agent.ts';
import { expandEnv } from './config-env.ts';
import {
  type HomeAssistantConfig,
  homeAssistantDocument,
  readHomeAssistantSection,
} from './config-homeassistant.ts';
import { type MetricsConfig, readMetricsSection } from './config-metrics.ts';
import { type MqttConfig, mqttDocument, readMqttSection } from './config-mqtt.ts';
import { type QueueConfig, queueDocument, readQueueSection } from './config-queue.ts';
import { type ConfigProblem, Reader } from './config-reader.ts';
import { readSerialSection, type SerialPortConfig, serialPortDocument } from './config-serial.ts';
import { readTopicsSection, type TopicsConfig } from './config-topics.ts';
import { lineOf, parseStrictJson, yaml } from './config-yaml.ts';

export { defaultNodeId, type HomeAssistantConfig } from './config-homeassistant.ts';
export type { MetricsConfig } from './config-metrics.ts';
export { DEFAULT_PASSWORD_ENV, DEFAULT_USERNAME_ENV, type MqttConfig, type TlsFiles } from './config-mqtt.ts';
export { DEFAULT_QUEUE_MAX_BYTES, type FsyncSetting, type QueueConfig } from './config-queue.ts';
export { type ConfigProblem, parseDuration, parseSize } from './config-reader.ts';
export type { Framing, SerialPortConfig, UsbMatch } from './config-serial.ts';
export { type PayloadFormat, type TopicsConfig, templateProblem } from './config-topics.ts';

export interface AgentConfig extends AgentSection {
  serial: SerialPortConfig[];
  mqtt: MqttConfig;
  topics: TopicsConfig;
  queue: QueueConfig;
  homeassistant: HomeAssistantConfig;
  metrics?: MetricsConfig;
}

const SECTIONS = ['agent', 'serial', 'mqtt', 'topics', 'queue', 'homeassistant', 'metrics'] as const;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly problems: ConfigProblem[],
    readonly source = 'config',
  ) {
    super(
      `${source}: ${problems.length} problem${problems.length === 1 ? '' : 's'}\n${problems
        .map((p) => `  ${problemLine(p)}`)
        .join('\n')}`,
    );
  }

  /** One line per problem, as `check` prints them (and a refused reload logs them). */
  get lines(): string[] {
    return this.problems.map(problemLine);
  }
}

function problemLine(p: ConfigProblem): string {
  return `${p.path || '(document)'}${p.line ? ` (line ${p.line})` : ''}: ${p.message}`;
}

export interface ParseOptions {
  /** Relative paths resolve against it (the config file's directory). */
  baseDir?: string;
  env?: NodeJS.ProcessEnv;
  /** For messages: the file name. */
  source?: string;
}

/** Validates a parsed document. Throws ConfigError with every problem found. */
export function parseConfig(raw: unknown, options: ParseOptions = {}): AgentConfig {
  const env = options.env ?? process.env;
  const envProblems: ConfigProblem[] = [];
  raw = expandEnv(raw, env, envProblems);
  // Only these: a value left unexpanded would only bring follow-on problems.
  if (envProblems.length > 0) throw new ConfigError(envProblems, options.source);
  const r = new Reader(options.baseDir ?? process.cwd());
  const root = r.object('', raw, SECTIONS) ?? {};
  if (raw === undefined || raw === null) r.problem('', 'the file is empty');
  // In the file's order, so that problems are listed as they stand; the agent section first,
  // as the others derive defaults from its id and state directory.
  const agent = readAgentSection(r, root.agent, env);
  const serial = readSerialSection(r, root.serial);
  const mqtt = readMqttSection(r, root.mqtt, agent.id, env);
  const topics = readTopicsSection(r, root.topics);
  const queue = readQueueSection(r, root.queue, agent.stateDir);
  const homeassistant = readHomeAssistantSection(r, root.homeassistant, agent.id);
  if (homeassistant.enabled && topics.payload === 'cbor')
    r.problem(
      'topics.payload',
      'Home Assistant cannot read CBOR readings: use json (or raw) with homeassistant.enabled',
    );
  const metrics = readMetricsSection(r, root.metrics);
  if (r.problems.length > 0) throw new ConfigError(r.problems, options.source);
  const config: AgentConfig = { ...agent, serial, mqtt, topics, queue, homeassistant };
  if (metrics !== undefined) config.metrics = metrics;
  return config;
}

/** Parses YAML (JSON is YAML) text; problems carry line numbers. */
export function parseConfigText(text: string, options: ParseOptions = {}): AgentConfig {
  const source = options.source ?? 'config';
  if (text.length > 1 << 20) throw new ConfigError([{ path: '', message: 'larger than 1 MiB' }], source);
  const json = parseStrictJson(text);
  if (json !== undefined) {
    try {
      return parseConfig(json, { ...options, source });
    } catch (e) {
      // Problems in a JSON config: the YAML path below finds them again, with line numbers.
      if (!(e instanceof ConfigError)) throw e;
    }
  }
  const { LineCounter, parseDocument } = yaml();
  const lc = new LineCounter();
  // uniqueKeys: a key given twice is a mistake, not "last one wins".
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.slice(0, 10).map((e) => ({
        path: '',
        message: `YAML: ${e.message.split('\n')[0]}`,
        line: e.linePos?.[0]?.line,
      })),
      source,
    );
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    throw new ConfigError([{ path: '', message: `YAML: ${(e as Error).message}` }], source);
  }
  try {
    return parseConfig(raw, { ...options, source });
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    for (const p of e.problems) p.line = lineOf(doc, lc, p.path);
    throw new ConfigError(e.problems, source);
  }
}

/** Reads and validates a config file. */
export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(
      [{ path: '', message: `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` }],
      file,
    );
  }
  return parseConfigText(text, { baseDir: path.dirname(path.resolve(file)), env, source: file });
}

/**
 * The resolved config in the file's own keys and units (`agent.statusInterval: 2s`, not
 * `statusIntervalMs: 2000`), for `check` and for naming changed settings on a reload. Parsing
 * it again gives the same config (the password aside, which `check` masks).
 */
export function configDocument(c: AgentConfig): Record<string, unknown> {
  return {
    agent: agentDocument(c),
    serial: c.serial.map(serialPortDocument),
    mqtt: mqttDocument(c.mqtt),
    topics: { ...c.topics },
    queue: queueDocument(c.queue),
    homeassistant: homeAssistantDocument(c.homeassistant),
    ...(c.metrics === undefined ? {} : { metrics: { listen: c.metrics.listen } }),
  };
}

/** The config with secrets masked, for `check` and logs. */
export function redacted(c: AgentConfig): AgentConfig {
  return { ...c, mqtt: { ...c.mqtt, password: c.mqtt.password === undefined ? undefined : '********' } };
}
