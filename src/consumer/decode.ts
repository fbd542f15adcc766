import type { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import { DecodeError } from '../errors.ts';
import { decodeConfluent } from './avro.ts';
import { decodeDebeziumJson, decodeDebeziumJsonKey, type JsonDecodeOptions } from './json-debezium.ts';

/**
 * Which wire format a topic's messages are read as: Confluent-wire Avro (our
 * capture, Debezium with the AvroConverter), Kafka Connect JSON (Debezium
 * with the JsonConverter, schemas on or off), or `auto`: per message, magic
 * byte 0 is Avro and `{` is JSON. Forcing a format makes a message of the
 * other kind a dead letter instead of a guess.
 */
export const VALUE_FORMATS = ['auto', 'avro', 'json'] as const;
export type ValueFormat = (typeof VALUE_FORMATS)[number];

export interface InputFormats extends JsonDecodeOptions {
  /** The format of every topic not named in `topics`. */
  format: ValueFormat;
  /** Per-topic overrides, full topic name → format. */
  topics: Readonly<Record<string, ValueFormat>>;
}

/**
 * Scales of the SPEC §1 numeric columns (numeric(10,2), numeric(3,2),
 * numeric(4,2)): used only where a message does not carry the scale itself
 * (Debezium JSON without schemas, decimal.handling.mode=double).
 */
export const CONTRACT_DECIMAL_SCALES: Readonly<Record<string, number>> = {
  'products.price': 2, 'products.rating': 2, 'order_items.unit_price': 2, 'order_items.discount': 2,
};

export const AUTO_FORMATS: InputFormats = { format: 'auto', topics: {}, decimalScales: CONTRACT_DECIMAL_SCALES };

function isJsonStart(buf: Buffer): boolean {
  for (const b of buf) {
    if (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d) continue;
    return b === 0x7b; // '{'
  }
  return false;
}

export class MessageDecoder {
  constructor(private readonly registry: SchemaRegistry, private readonly formats: InputFormats = AUTO_FORMATS) {}

  formatOf(topic: string): ValueFormat {
    return this.formats.topics[topic] ?? this.formats.format;
  }

  kind(topic: string, buf: Buffer): 'avro' | 'json' {
    const f = this.formatOf(topic);
    if (f !== 'auto') return f;
    if (buf.length > 0 && buf[0] === 0) return 'avro';
    if (isJsonStart(buf)) return 'json';
    throw new DecodeError(buf.length === 0
      ? 'empty message'
      : `first byte ${buf[0]} is neither Confluent Avro (magic byte 0) nor JSON ("{")`);
  }

  /**
   * A message value → the decoded Debezium envelope (validateEnvelope checks
   * it). DecodeError for bytes that can never decode; UnavailableError when
   * the registry cannot be reached.
   */
  async value(topic: string, buf: Buffer): Promise<unknown> {
    return this.kind(topic, buf) === 'avro' ? decodeConfluent(this.registry, buf) : decodeDebeziumJson(buf, this.formats);
  }

  /** A message key → its record (`{customer_id: 1n}`); the table is the topic's last segment. */
  async key(topic: string, buf: Buffer): Promise<unknown> {
    return this.kind(topic, buf) === 'avro' ? decodeConfluent(this.registry, buf) : decodeDebeziumJsonKey(buf, topic.split('.').at(-1), this.formats);
  }
}
