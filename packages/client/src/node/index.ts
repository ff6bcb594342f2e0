import { type ClientOptions, MqttClient } from './client.ts';
import { parseUrl } from './target.ts';

export { backoffDelay } from './backoff.ts';
export {
  ClientError,
  type ClientOptions,
  type EndOptions,
  MqttClient,
  type PublishOptions,
  type PublishPromise,
  type PublishResult,
  type SubscribeRequest,
  type SubscribeResult,
  type UnsubscribeResult,
} from './client.ts';
export * from './durable-queue/index.ts';
export type { ServerAddress, Target, TransportOptions, TransportProtocol } from './target.ts';

/**
 * Connect to a broker: `connect('mqtt://host:1883', options)` or `connect({ host, port, ... })`.
 * Schemes: mqtt (TCP), mqtts (TLS), ws, wss. The client connects (and reconnects) by itself.
 */
export function connect(url: string | ClientOptions, options: ClientOptions = {}): MqttClient {
  if (typeof url !== 'string') return new MqttClient(url);
  const parsed = parseUrl(url);
  const merged: ClientOptions & { fromUrl: typeof parsed.target } = { ...options, fromUrl: parsed.target };
  if (merged.username === undefined && parsed.username !== undefined) merged.username = parsed.username;
  if (merged.password === undefined && parsed.password !== undefined) merged.password = parsed.password;
  return new MqttClient(merged);
}
