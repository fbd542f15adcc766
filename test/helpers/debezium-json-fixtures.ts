import { decimalToBytes } from '../../src/consumer/avro.ts';
import { TABLES, type TableName } from '../../src/consumer/tables.ts';
import type { FixtureEvent, FixtureRow } from './debezium-fixtures.ts';

/**
 * Debezium 3.0.8's PostgreSQL connector output through Kafka Connect's
 * JsonConverter, for the demo tables, shaped as the real connector writes it
 * (checked against its output in test/integration/debezium-real.test.ts):
 * int64 as JSON numbers, numeric as base64 unscaled bytes with the scale in
 * the schema (or `decimal.handling.mode=string|double`), timestamptz as
 * io.debezium.time.ZonedTimestamp, and the `{"schema","payload"}` wrapper
 * when schemas are enabled.
 */
export interface JsonFixtureOptions {
  schemas: boolean;
  decimal?: 'precise' | 'string' | 'double';
  prefix?: string;
  schema?: string;
}

const DECIMALS: Record<string, [number, number]> = {
  'products.price': [10, 2], 'products.rating': [3, 2], 'order_items.unit_price': [10, 2], 'order_items.discount': [4, 2],
};
const NOT_NULL = new Set([
  'customers.customer_id', 'customers.email', 'customers.first_name', 'customers.last_name', 'customers.customer_segment', 'customers.created_at', 'customers.updated_at',
  'products.product_id', 'products.product_name', 'products.price', 'products.updated_at', // category: nullable (migrations/source/0002)
  'orders.order_id', 'orders.customer_id', 'orders.order_date', 'orders.status', 'orders.updated_at',
  'order_items.order_id', 'order_items.product_id', 'order_items.quantity', 'order_items.unit_price', 'order_items.discount',
]);

/** A JSON number written verbatim (int64 past 2^53, a double's digits). */
export class Raw {
  constructor(readonly text: string) {}
}

/** JSON text with bigint and Raw values written as bare numbers. */
export function jsonText(v: unknown): string {
  const raws: string[] = [];
  const s = JSON.stringify(v, (_k, x) => {
    if (typeof x === 'bigint') { raws.push(x.toString()); return `\u0000${raws.length - 1}`; }
    if (x instanceof Raw) { raws.push(x.text); return `\u0000${raws.length - 1}`; }
    return x;
  });
  return s.replace(/"\\u0000(\d+)"/g, (_m, i) => raws[Number(i)]!);
}

function fieldSchema(table: TableName, col: string, o: JsonFixtureOptions): Record<string, unknown> {
  const kind = TABLES[table].columns[col]!;
  const optional = !NOT_NULL.has(`${table}.${col}`);
  switch (kind) {
    case 'bigint': return { type: 'int64', optional, field: col };
    case 'int': return { type: 'int32', optional, field: col };
    case 'text': return { type: 'string', optional, field: col };
    case 'timestamptz': return { type: 'string', optional, name: 'io.debezium.time.ZonedTimestamp', version: 1, field: col };
    case 'numeric': {
      const [p, s] = DECIMALS[`${table}.${col}`]!;
      if (o.decimal === 'string') return { type: 'string', optional, field: col };
      if (o.decimal === 'double') return { type: 'double', optional, field: col };
      return { type: 'bytes', optional, name: 'org.apache.kafka.connect.data.Decimal', version: 1, parameters: { scale: String(s), 'connect.decimal.precision': String(p) }, field: col };
    }
  }
}

function columnValue(table: TableName, col: string, v: FixtureRow[string], o: JsonFixtureOptions): unknown {
  if (v === null || v === undefined) return null;
  const kind = TABLES[table].columns[col]!;
  if (kind === 'bigint' || kind === 'int') return BigInt(v);
  if (kind === 'numeric') {
    const [, s] = DECIMALS[`${table}.${col}`]!;
    if (o.decimal === 'string') return String(v);
    if (o.decimal === 'double') return new Raw(String(Number(v)));
    return decimalToBytes(String(v), s).toString('base64');
  }
  return String(v);
}

function jsonRow(table: TableName, row: FixtureRow | null | undefined, o: JsonFixtureOptions): Record<string, unknown> | null {
  if (!row) return null;
  return Object.fromEntries(Object.keys(TABLES[table].columns).map((c) => [c, columnValue(table, c, row[c] ?? null, o)]));
}

function usOf(iso: string): bigint {
  const m = /\.(\d{1,6})Z$/.exec(iso);
  return (BigInt(Date.parse(iso)) / 1000n) * 1_000_000n + BigInt((m?.[1] ?? '').padEnd(6, '0'));
}

const SOURCE_FIELDS = [
  { type: 'string', optional: false, field: 'version' }, { type: 'string', optional: false, field: 'connector' },
  { type: 'string', optional: false, field: 'name' }, { type: 'int64', optional: false, field: 'ts_ms' },
  { type: 'string', optional: true, name: 'io.debezium.data.Enum', version: 1, parameters: { allowed: 'true,first,first_in_data_collection,last_in_data_collection,last,false,incremental' }, default: 'false', field: 'snapshot' },
  { type: 'string', optional: false, field: 'db' }, { type: 'string', optional: true, field: 'sequence' },
  { type: 'int64', optional: true, field: 'ts_us' }, { type: 'int64', optional: true, field: 'ts_ns' },
  { type: 'string', optional: false, field: 'schema' }, { type: 'string', optional: false, field: 'table' },
  { type: 'int64', optional: true, field: 'txId' }, { type: 'int64', optional: true, field: 'lsn' }, { type: 'int64', optional: true, field: 'xmin' },
];

export function jsonEnvelope(ev: FixtureEvent, o: JsonFixtureOptions): Buffer {
  const prefix = o.prefix ?? 'shop';
  const schema = o.schema ?? 'public';
  const ns = `${prefix}.${schema}.${ev.table}`;
  const us = usOf(ev.commitTime);
  const payload = {
    before: jsonRow(ev.table, ev.before, o),
    after: jsonRow(ev.table, ev.after, o),
    source: {
      version: '3.0.8.Final', connector: 'postgresql', name: prefix, ts_ms: us / 1000n, snapshot: ev.op === 'r' ? 'true' : 'false', db: 'shop',
      sequence: `["${ev.lsn - 8n}","${ev.lsn}"]`, ts_us: ev.omitTsUs ? null : us, ts_ns: ev.omitTsUs ? null : us * 1000n,
      schema, table: ev.table, txId: ev.txId ?? 1000n, lsn: ev.lsn, xmin: null,
    },
    transaction: null,
    op: ev.op, ts_ms: us / 1000n + 5n, ts_us: us + 5000n, ts_ns: (us + 5000n) * 1000n + 123n,
  };
  if (!o.schemas) return Buffer.from(jsonText(payload));
  const value = { type: 'struct', fields: Object.keys(TABLES[ev.table].columns).map((c) => fieldSchema(ev.table, c, o)), optional: true, name: `${ns}.Value` };
  const envelope = {
    type: 'struct',
    fields: [
      { ...value, field: 'before' }, { ...value, field: 'after' },
      { type: 'struct', fields: SOURCE_FIELDS, optional: false, name: 'io.debezium.connector.postgresql.Source', field: 'source' },
      { type: 'struct', fields: [{ type: 'string', optional: false, field: 'id' }, { type: 'int64', optional: false, field: 'total_order' }, { type: 'int64', optional: false, field: 'data_collection_order' }], optional: true, name: 'event.block', version: 1, field: 'transaction' },
      { type: 'string', optional: false, field: 'op' }, { type: 'int64', optional: true, field: 'ts_ms' },
      { type: 'int64', optional: true, field: 'ts_us' }, { type: 'int64', optional: true, field: 'ts_ns' },
    ],
    optional: false, name: `${ns}.Envelope`, version: 2,
  };
  return Buffer.from(jsonText({ schema: envelope, payload }));
}

export function jsonKey(table: TableName, row: FixtureRow, o: JsonFixtureOptions): Buffer {
  const ns = `${o.prefix ?? 'shop'}.${o.schema ?? 'public'}.${table}`;
  const payload = Object.fromEntries(TABLES[table].key.map((k) => [k, BigInt(row[k]!)]));
  if (!o.schemas) return Buffer.from(jsonText(payload));
  const schema = { type: 'struct', fields: TABLES[table].key.map((k) => ({ type: 'int64', optional: false, field: k })), optional: false, name: `${ns}.Key` };
  return Buffer.from(jsonText({ schema, payload }));
}
