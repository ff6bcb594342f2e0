export { Agent, type AgentCounters, type AgentOptions, type ReloadResult } from './agent.ts';
export { CommandRouter, type CommandRouterOptions, type CommandTarget, type Reply } from './commands.ts';
export {
  type AgentConfig,
  ConfigError,
  type ConfigProblem,
  configDocument,
  DEFAULT_PASSWORD_ENV,
  type Framing,
  type HomeAssistantConfig,
  loadConfig,
  type MetricsConfig,
  type MqttConfig,
  type PayloadFormat,
  parseConfig,
  parseConfigText,
  parseDuration,
  parseSize,
  type QueueConfig,
  redacted,
  type SerialPortConfig,
  type TopicsConfig,
} from './config.ts';
export { SeqWindow } from './dedupe.ts';
export {
  type DeviceCounters,
  type DeviceEvent,
  PortSession,
  type SessionCounters,
  type SessionHost,
} from './device-session.ts';
export { DISCOVERY_STATE_FILE, HomeAssistantDiscovery } from './discovery.ts';
export {
  type DeviceDescription,
  type DiscoveryConfig,
  type DiscoveryContext,
  deviceConfigs,
  gatewayConfigs,
  topicId,
  type UnitMapping,
  unitMapping,
} from './homeassistant.ts';
export { createLogger, type Logger, type LogLevel, silentLogger } from './log.ts';
export {
  Mapper,
  type MapperOptions,
  MSG_ID_PROPERTY,
  messageId,
  parseMessageId,
  type ReadingContext,
} from './mapper.ts';
export {
  CONTENT_TYPE as METRICS_CONTENT_TYPE,
  Exposition,
  MetricsServer,
  type MetricsView,
  renderMetrics,
} from './metrics.ts';
export type {
  ModbusDeviceConfig,
  ModbusPortConfig,
  ModbusRegisterConfig,
  ModbusTable,
  ModbusValueType,
} from './modbus-config.ts';
export {
  type ModbusDeviceState,
  ModbusSession,
  type ModbusSessionCounters,
  type ModbusSessionHost,
  type ModbusSessionOptions,
} from './modbus-session.ts';
export {
  findUsbPort,
  type LinkState,
  type ListedPort,
  listSerialPorts,
  matchUsbPorts,
  type PortLister,
  type PortOpener,
  resolvePortPath,
  SerialLink,
  serialportOpener,
} from './serial-link.ts';
export { type AgentStatus, formatStatus, readStatus, STATUS_FILE } from './status.ts';
