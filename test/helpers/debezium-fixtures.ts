import avro from 'avsc';
import type { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import { avroOptions } from '../../src/consumer/avro.ts';
import { TABLES, type TableName } from '../../src/consumer/tables.ts';

/**
 * Debezium-shaped Avro for the demo tables, as the Debezium PostgreSQL
 * connector with the Confluent AvroConverter writes it (default encodings:
 * bigint → long, int → int, numeric(p,s) → bytes/decimal with
 * connect.parameters, timestamptz → io.debezium.time.ZonedTimestamp string),
 * so consumer tests do not depend on our capture.
 */
const DECIMALS: Record<string, [number, number]> = {
  'products.price': [10, 2],
  'products.rating': [3, 2],
  'order_items.unit_price': [10, 2],
  'order_items.discount': [4, 2],
};
const NOT_NULL = new Set(['customers.customer_id', 'products.product_id', 'orders.order_id', 'order_items.order_id', 'order_items.product_id']);

function fieldType(table: TableName, col: string, kind: string): unknown {
  switch (kind) {
    case 'bigint': return 'long';
    case 'int': return 'int';
    case 'text': return 'string';
    case 'timestamptz': return { type: 'string', 'connect.version': 1, 'connect.name': 'io.debezium.time.ZonedTimestamp' };
    case 'numeric': {
      const [p, s] = DECIMALS[`${table}.${col}`] ?? [10, 2];
      return {
        type: 'bytes', scale: s, precision: p, 'connect.version': 1,
        'connect.parameters': { scale: String(s), 'connect.decimal.precision': String(p) },
        'connect.name': 'org.apache.kafka.connect.data.Decimal', logicalType: 'decimal',
      };
    }
    default: throw new Error(kind);
  }
}

export function valueRecordSchema(prefix: string, table: TableName, schema = 'public'): Record<string, unknown> {
  const spec = TABLES[table];
  return {
    type: 'record', name: 'Value', namespace: `${prefix}.${schema}.${table}`,
    fields: Object.entries(spec.columns).map(([col, kind]) => {
      const t = fieldType(table, col, kind);
      return NOT_NULL.has(`${table}.${col}`) ? { name: col, type: t } : { name: col, type: ['null', t], default: null };
    }),
    'connect.name': `${prefix}.${schema}.${table}.Value`,
  };
}

export function keySchema(prefix: string, table: TableName, schema = 'public'): Record<string, unknown> {
  return {
    type: 'record', name: 'Key', namespace: `${prefix}.${schema}.${table}`,
    fields: TABLES[table].key.map((k) => ({ name: k, type: 'long' })),
    'connect.name': `${prefix}.${schema}.${table}.Key`,
  };
}

export function envelopeSchema(prefix: string, table: TableName, schema = 'public'): Record<string, unknown> {
  const ns = `${prefix}.${schema}.${table}`;
  return {
    type: 'record', name: 'Envelope', namespace: ns,
    fields: [
      { name: 'before', type: ['null', valueRecordSchema(prefix, table, schema)], default: null },
      { name: 'after', type: ['null', 'Value'], default: null },
      {
        name: 'source',
        type: {
          type: 'record', name: 'Source', namespace: 'io.debezium.connector.postgresql',
          fields: [
            { name: 'version', type: 'string' },
            { name: 'connector', type: 'string' },
            { name: 'name', type: 'string' },
            { name: 'ts_ms', type: 'long' },
            { name: 'snapshot', type: [{ type: 'string', 'connect.version': 1, 'connect.parameters': { allowed: 'true,last,false,incremental' }, 'connect.default': 'false', 'connect.name': 'io.debezium.data.Enum' }, 'null'], default: 'false' },
            { name: 'db', type: 'string' },
            { name: 'sequence', type: ['null', 'string'], default: null },
            { name: 'ts_us', type: ['null', 'long'], default: null },
            { name: 'ts_ns', type: ['null', 'long'], default: null },
            { name: 'schema', type: 'string' },
            { name: 'table', type: 'string' },
            { name: 'txId', type: ['null', 'long'], default: null },
            { name: 'lsn', type: ['null', 'long'], default: null },
            { name: 'xmin', type: ['null', 'long'], default: null },
          ],
          'connect.name': 'io.debezium.connector.postgresql.Source',
        },
      },
      { name: 'op', type: 'string' },
      { name: 'ts_ms', type: ['null', 'long'], default: null },
      { name: 'ts_us', type: ['null', 'long'], default: null },
      { name: 'ts_ns', type: ['null', 'long'], default: null },
      {
        name: 'transaction',
        type: ['null', {
          type: 'record', name: 'block', namespace: 'event',
          fields: [
            { name: 'id', type: 'string' },
            { name: 'total_order', type: 'long' },
            { name: 'data_collection_order', type: 'long' },
          ],
          'connect.version': 1, 'connect.name': 'event.block',
        }],
        default: null,
      },
    ],
    'connect.version': 1,
    'connect.name': `${ns}.Envelope`,
  };
}

export type FixtureRow = Record<string, string | number | bigint | null>;

export interface FixtureEvent {
  table: TableName;
  op: 'c' | 'u' | 'd' | 'r' | 't';
  before?: FixtureRow | null;
  after?: FixtureRow | null;
  lsn: bigint;
  /** Commit time, ISO with microseconds. */
  commitTime: string;
  txId?: bigint;
  /** Leave source.ts_us out, as Debezium before 2.x does. */
  omitTsUs?: boolean;
}

function toAvroRow(table: TableName, row: FixtureRow | null | undefined): Record<string, unknown> | null {
  if (!row) return null;
  const out: Record<string, unknown> = {};
  for (const [col, kind] of Object.entries(TABLES[table].columns)) {
    const v = row[col];
    if (v === undefined || v === null) out[col] = null;
    else if (kind === 'bigint') out[col] = BigInt(v);
    else if (kind === 'int') out[col] = Number(v);
    else out[col] = String(v);
  }
  return out;
}

function commitUs(iso: string): bigint {
  const m = /\.(\d{1,6})Z$/.exec(iso);
  const ms = BigInt(Date.parse(iso));
  return (ms / 1000n) * 1_000_000n + BigInt((m?.[1] ?? '').padEnd(6, '0'));
}

export function envelopeValue(ev: FixtureEvent, schema = 'public'): Record<string, unknown> {
  const us = commitUs(ev.commitTime);
  return {
    before: toAvroRow(ev.table, ev.before),
    after: toAvroRow(ev.table, ev.after),
    source: {
      version: '2.7.3.Final', connector: 'postgresql', name: 'shop', ts_ms: us / 1000n,
      snapshot: ev.op === 'r' ? 'true' : 'false', db: 'shop', sequence: `[null,"${ev.lsn}"]`,
      ts_us: ev.omitTsUs ? null : us, ts_ns: ev.omitTsUs ? null : us * 1000n,
      schema, table: ev.table, txId: ev.txId ?? 1000n, lsn: ev.lsn, xmin: null,
    },
    op: ev.op,
    ts_ms: us / 1000n + 5n, ts_us: null, ts_ns: null,
    transaction: null,
  };
}

export function avroType(schema: Record<string, unknown>): avro.Type {
  return avro.Type.forSchema(schema as unknown as avro.Schema, avroOptions());
}

/** Confluent wire bytes without a registry: magic byte, schema id, Avro body. */
export function wire(id: number, type: avro.Type, value: unknown): Buffer {
  const head = Buffer.alloc(5);
  head.writeInt32BE(id, 1);
  return Buffer.concat([head, type.toBuffer(value)]);
}

/** Registers key and value schemas under `<topic>-key`/`-value` and returns encoders. */
export async function registerTable(registry: SchemaRegistry, prefix: string, table: TableName, schema = 'public') {
  const topic = `${prefix}.${schema}.${table}`;
  const { id: keyId } = await registry.register({ type: 'AVRO' as never, schema: JSON.stringify(keySchema(prefix, table, schema)) }, { subject: `${topic}-key` });
  const { id: valueId } = await registry.register({ type: 'AVRO' as never, schema: JSON.stringify(envelopeSchema(prefix, table, schema)) }, { subject: `${topic}-value` });
  const keyType = avroType(keySchema(prefix, table, schema));
  const valueType = avroType(envelopeSchema(prefix, table, schema));
  return {
    topic,
    encodeKey: (row: FixtureRow) => wire(keyId, keyType, Object.fromEntries(TABLES[table].key.map((k) => [k, BigInt(row[k]!)]))),
    encodeValue: (ev: FixtureEvent) => wire(valueId, valueType, envelopeValue(ev, schema)),
  };
}
