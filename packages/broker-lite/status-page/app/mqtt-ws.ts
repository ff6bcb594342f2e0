/**
 * The browser's MQTT client: this project's sans-IO session (@mqtt-edge/client/core, with the
 * codec) driven by a WebSocket and one timer. Reconnects by itself with backoff, except after a
 * refused login, which is the page's to answer (its login form).
 */
import { ClientSession, type SessionEvent, type SessionOptions } from '@mqtt-edge/client/core';
import type { QoS } from '@mqtt-edge/codec';

export type LinkState = 'connecting' | 'connected' | 'reconnecting' | 'refused' | 'stopped';

export interface LinkHandlers {
  state(state: LinkState, detail: string): void;
  message(topic: string, payload: Uint8Array): void;
  /** The broker's answer to subscribe(): a reason code per filter (0x80 and up: refused). */
  suback(filters: string[], codes: number[]): void;
}

/** CONNACK reason codes that mean "who you are is not welcome": ask, do not retry. */
const REFUSED = new Set([0x84, 0x85, 0x86, 0x87, 0x8a, 0x8c]);
const MIN_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 4000;

export class MqttLink {
  private session: ClientSession;
  private ws: WebSocket | null = null;
  /** The session's next deadline (keepalive, CONNACK wait). */
  private tickTimer: ReturnType<typeof setTimeout> | undefined;
  /** The next connection attempt. */
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private backoff = MIN_BACKOFF_MS;
  private stopped = false;
  private readonly requests = new Map<number, string[]>();
  /** Filters asked for while not connected: sent at the next CONNACK. */
  private readonly queued: string[] = [];

  constructor(
    private readonly url: string,
    options: SessionOptions,
    private readonly on: LinkHandlers,
  ) {
    this.session = new ClientSession({ protocolVersion: 5, keepalive: 30, ...options });
  }

  start(): void {
    this.stopped = false;
    this.dial();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.tickTimer);
    clearTimeout(this.retryTimer);
    if (this.session.state === 'connected') {
      this.session.disconnect(Date.now());
      this.flush();
    }
    this.ws?.close();
    this.ws = null;
    this.on.state('stopped', '');
  }

  /**
   * Subscribes now, or at the next CONNACK when not connected. After a reconnect the session
   * itself sends again every filter it was asked for (its `resubscribe`).
   */
  subscribe(filters: string[], qos: QoS = 0): void {
    if (this.session.state !== 'connected') {
      for (const f of filters) if (!this.queued.includes(f)) this.queued.push(f);
      return;
    }
    const id = this.session.subscribe(
      filters.map((topicFilter) => ({ topicFilter, qos })),
      undefined,
      Date.now(),
    );
    this.requests.set(id, filters);
    this.flush();
  }

  private dial(): void {
    if (this.stopped) return;
    this.on.state(this.backoff === MIN_BACKOFF_MS ? 'connecting' : 'reconnecting', '');
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.url, 'mqtt');
    } catch (err) {
      this.retry(String(err));
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onopen = () => {
      this.session.open(Date.now());
      this.flush();
    };
    ws.onmessage = (e: MessageEvent) => {
      if (!(e.data instanceof ArrayBuffer)) return;
      this.session.receive(new Uint8Array(e.data), Date.now());
      this.flush();
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.session.connectionLost(Date.now());
      this.flush();
      this.retry('connection closed');
    };
  }

  private retry(why: string): void {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    const wait = this.backoff * (0.5 + Math.random() / 2);
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    this.on.state('reconnecting', why);
    this.retryTimer = setTimeout(() => this.dial(), wait);
  }

  /** Writes what the session has to send, hands its events on, and sets the timer. */
  private flush(): void {
    const events = this.session.takeEvents();
    const out = this.session.takeOutput();
    if (out !== null && this.ws !== null && this.ws.readyState === WebSocket.OPEN) this.ws.send(out);
    for (const e of events) this.event(e);
    clearTimeout(this.tickTimer);
    const deadline = this.session.nextDeadline();
    if (deadline !== undefined && this.ws !== null)
      this.tickTimer = setTimeout(
        () => {
          this.session.tick(Date.now());
          this.flush();
        },
        Math.max(0, deadline - Date.now()),
      );
  }

  private event(e: SessionEvent): void {
    switch (e.type) {
      case 'connected': {
        this.backoff = MIN_BACKOFF_MS;
        this.on.state('connected', '');
        if (this.queued.length > 0) this.subscribe(this.queued.splice(0));
        break;
      }
      case 'message':
        this.on.message(e.packet.topic, e.packet.payload);
        break;
      case 'suback': {
        const filters = this.requests.get(e.packetId);
        this.requests.delete(e.packetId);
        if (filters !== undefined) this.on.suback(filters, e.reasonCodes);
        break;
      }
      case 'closed': {
        const ws = this.ws;
        this.ws = null;
        ws?.close();
        this.session.connectionLost(Date.now());
        if (e.by === 'server' && REFUSED.has(e.reasonCode)) {
          clearTimeout(this.retryTimer);
          this.stopped = true;
          // Mosquitto and broker-lite answer a wrong password 0x87; others 0x86. The page shows
          // this only after a login from its form, so either means the credentials.
          const credentials = e.reasonCode === 0x86 || e.reasonCode === 0x87;
          this.on.state('refused', credentials ? 'wrong user name or password' : 'not authorized');
        } else if (!this.stopped) this.retry(e.reasonString ?? 'connection closed');
        break;
      }
      default:
        break;
    }
  }
}
