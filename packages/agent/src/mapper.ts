/**
 * A reading becomes an MQTT message: topic from the template, payload in the configured format,
 * and a message id that names the reading for good, `device:bootId:seq:index` (index: the
 * reading's place in its DATA frame), so a consumer can drop the duplicates a crashed agent
 * may publish twice. The id is in the payload (JSON, CBOR) and, with MQTT 5, in the user
 * property `msg-id` (the only place for it with the raw format).
 */
import type { OutboxMessage } from '@mqtt-edge/client';
import type { Properties, QoS } from '@mqtt-edge/codec';
import type { Reading } from '@mqtt-edge/serial-protocol';
import { Encoder } from 'cbor-x';
import type { PayloadFormat } from './config.ts';

export interface MapperOptions {
  prefix: string;
  /** `{prefix}`, `{device}`, `{sensor}` (validated by the config). */
  template: string;
  payload: PayloadFormat;
  qos: QoS;
  protocolVersion: 4 | 5;
}

export interface ReadingContext {
  device: string;
  bootId: number;
  seq: number;
  index: number;
  reading: Reading;
  /** Agent wall clock when the frame arrived, ms since the epoch. */
  receivedAt: number;
}

export const MSG_ID_PROPERTY = 'msg-id';

export function messageId(device: string, bootId: number, seq: number, index: number): string {
  return `${device}:${bootId}:${seq}:${index}`;
}

/** Parses a message id back; undefined when it is not one. */
export function parseMessageId(
  id: string,
): { device: string; bootId: number; seq: number; index: number } | undefined {
  const m = /^(.{1,64}):(\d{1,10}):(\d{1,16}):(\d{1,3})$/.exec(id);
  if (m === null) return undefined;
  return { device: m[1], bootId: Number(m[2]), seq: Number(m[3]), index: Number(m[4]) };
}

const cbor = new Encoder({ useRecords: false, mapsAsObjects: true, variableMapSize: true, pack: false });
const JSON_PROPS: Properties = { contentType: 'application/json', payloadFormatIndicator: true };
const CBOR_PROPS: Properties = { contentType: 'application/cbor' };
const RAW_PROPS: Properties = { contentType: 'text/plain', payloadFormatIndicator: true };

export class Mapper {
  private readonly head: string;
  private readonly mid: string;
  private readonly tail: string;
  private readonly deviceFirst: boolean;
  private readonly simple: boolean;

  constructor(readonly options: MapperOptions) {
    const t = options.template.replaceAll('{prefix}', options.prefix);
    // Fast path for the usual shape `...{device}...{sensor}...`: three string pieces.
    const d = t.indexOf('{device}');
    const s = t.indexOf('{sensor}');
    this.simple = t.indexOf('{device}', d + 1) < 0 && t.indexOf('{sensor}', s + 1) < 0;
    this.deviceFirst = d < s;
    const [a, b] = this.deviceFirst ? [d, s] : [s, d];
    this.head = t.slice(0, a);
    this.mid = t.slice(a + 8, b);
    this.tail = t.slice(b + 8);
    this.template = t;
  }

  private readonly template: string;

  topic(device: string, sensor: string): string {
    if (!this.simple) return this.template.replaceAll('{device}', device).replaceAll('{sensor}', sensor);
    return this.deviceFirst
      ? this.head + device + this.mid + sensor + this.tail
      : this.head + sensor + this.mid + device + this.tail;
  }

  map(c: ReadingContext): OutboxMessage {
    const id = messageId(c.device, c.bootId, c.seq, c.index);
    const r = c.reading;
    let payload: Uint8Array;
    let props: Properties;
    switch (this.options.payload) {
      case 'json': {
        // Keys in a fixed order, the numbers as JSON writes them: consumers may diff payloads.
        let s = `{"id":${JSON.stringify(id)},"device":${JSON.stringify(c.device)},"sensor":${JSON.stringify(r.sensor)},"value":${JSON.stringify(r.value)}`;
        if (r.unit !== undefined) s += `,"unit":${JSON.stringify(r.unit)}`;
        if (r.ts !== undefined) s += `,"ts":${r.ts}`;
        s += `,"at":${c.receivedAt}}`;
        payload = Buffer.from(s, 'utf8');
        props = JSON_PROPS;
        break;
      }
      case 'cbor': {
        const o: Record<string, unknown> = { id, device: c.device, sensor: r.sensor, value: r.value };
        if (r.unit !== undefined) o.unit = r.unit;
        if (r.ts !== undefined) o.ts = r.ts;
        o.at = c.receivedAt;
        payload = cbor.encode(o);
        props = CBOR_PROPS;
        break;
      }
      case 'raw':
        payload = Buffer.from(String(r.value), 'latin1');
        props = RAW_PROPS;
        break;
    }
    const message: OutboxMessage = {
      topic: this.topic(c.device, r.sensor),
      payload,
      qos: this.options.qos,
      retain: false,
    };
    if (this.options.protocolVersion === 5)
      message.properties = { ...props, userProperties: [[MSG_ID_PROPERTY, id]] };
    return message;
  }
}
