/** Short constructors for scenario steps: the scenarios stay data, and read like a script. */
import type {
  AcksStep,
  ConnectStep,
  DisconnectStep,
  DropStep,
  ElapseStep,
  PublishStep,
  SubscribeStep,
  SysTopicsStep,
  UnsubscribeStep,
  WaitCloseStep,
  WaitStep,
} from './types.ts';

type Rest<T> = Omit<T, 'op' | 'client'>;

export const connect = (client: string, o: Rest<ConnectStep> = {}): ConnectStep => ({
  op: 'connect',
  client,
  ...o,
});

/** MQTT 5 connect. */
export const connect5 = (client: string, o: Rest<ConnectStep> = {}): ConnectStep => ({
  op: 'connect',
  client,
  version: 5,
  ...o,
});

export const subscribe = (client: string, ...filters: SubscribeStep['filters']): SubscribeStep => ({
  op: 'subscribe',
  client,
  filters,
});

export const unsubscribe = (client: string, ...filters: string[]): UnsubscribeStep => ({
  op: 'unsubscribe',
  client,
  filters,
});

export const publish = (
  client: string,
  topic: string,
  payload = '',
  o: Omit<Rest<PublishStep>, 'topic' | 'payload'> = {},
): PublishStep => ({ op: 'publish', client, topic, payload, ...o });

export const disconnect = (client: string, o: Rest<DisconnectStep> = {}): DisconnectStep => ({
  op: 'disconnect',
  client,
  ...o,
});

export const drop = (client: string): DropStep => ({ op: 'drop', client });

export const wait = (client: string, topic: string, o: Omit<Rest<WaitStep>, 'topic'> = {}): WaitStep => ({
  op: 'wait',
  client,
  topic,
  ...o,
});

export const waitClose = (client: string, timeoutMs?: number): WaitCloseStep => ({
  op: 'waitClose',
  client,
  timeoutMs,
});

export const acks = (client: string, mode: 'hold' | 'auto'): AcksStep => ({ op: 'acks', client, mode });

export const elapse = (ms: number): ElapseStep => ({ op: 'elapse', ms });

export const sysTopics = (client: string, filter?: string): SysTopicsStep => ({
  op: 'sysTopics',
  client,
  filter,
});
