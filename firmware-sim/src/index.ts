export { FaultInjector, type FaultRates, type FaultStats } from './faults.ts';
export {
  defaultWatchdogMs,
  Firmware,
  type FirmwareEvent,
  type FirmwareOptions,
  type FirmwareStats,
  MAX_INTERVAL_MS,
  MIN_INTERVAL_MS,
  MODES,
  type Mode,
  SIM_COMMANDS,
  type SimMode,
} from './firmware.ts';
export { createLinkPair, LinkPair } from './link.ts';
export { createLogger, type Level, type Logger, silentLogger } from './log.ts';
export { createSocatPair, hasSocat, type SocatPair } from './pty.ts';
export { type Pending, PendingRing } from './ring.ts';
export { Rng } from './rng.ts';
export { DEFAULT_SENSORS, Sensor, type SensorSpec } from './sensors.ts';
export { FirmwareSim, type FirmwareSimOptions, type SimStats } from './sim.ts';
export {
  type DevicePortOptions,
  InProcessTransport,
  PortTransport,
  PtyTransport,
  TappedTransport,
  type Transport,
  type TransportEvents,
} from './transport.ts';
