export {
  type BridgeOptions,
  type BridgeStats,
  type Bridges,
  defaultBridgeDir,
  startBridges,
} from './bridge.ts';
export { Broker, type BrokerStats, MAX_ACCEPTED_PACKET } from './broker.ts';
export * from './config-api.ts';
export type { AcceptOptions, ListenerInfo } from './connection.ts';
export * from './options.ts';
export { BROKER_VERSION } from './sys.ts';
