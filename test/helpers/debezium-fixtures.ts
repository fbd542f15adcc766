import avro from 'avsc';
import type { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import { avroOptions } from '../../src/consumer/avro.ts';
import { validateEnvelope, type RowChange } from '../../src/consumer/envelope.ts';
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
const changeTypes = new Map<TableName, avro.Type>();
/** A fixture event as the warehouse consumer receives it: through the table's Avro envelope and the runtime check. */
export function fixtureChange(ev: FixtureEvent): RowChange {
  let t = changeTypes.get(ev.table);
  if (!t) changeTypes.set(ev.table, (t = avroType(envelopeSchema('shop', ev.table))));
  return validateEnvelope(t.fromBuffer(t.toBuffer(envelopeValue(ev))));
}

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

// ---------------------------------------------------------------------------
// A seeded simulation of the source database: transactions over the demo
// tables, emitted as Debezium events in commit order, with the final rows
// kept so a test can compare staging with "the source".

/** Small deterministic PRNG (mulberry32) so a failing seed can be replayed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEGMENTS = ['bronze', 'silver', 'gold', 'platinum'];
// null: an uncategorised product, which mart_sales counts in its NULL group.
const CATEGORIES = ['books', 'games', 'garden', 'kitchen', null];

function iso(us: bigint): string {
  const ms = us / 1000n;
  return `${new Date(Number(ms)).toISOString().slice(0, 23)}${(us % 1000n).toString().padStart(3, '0')}Z`;
}

export class ShopSim {
  readonly events: FixtureEvent[] = [];
  readonly rows: Record<TableName, Map<string, FixtureRow>> = {
    customers: new Map(), products: new Map(), orders: new Map(), order_items: new Map(),
  };
  private clockUs = 1_704_067_200_000_000n; // 2024-01-01
  private lsn = 0x1000000n;
  private tx: { us: bigint; events: FixtureEvent[] } | null = null;
  private nextId = 1;
  readonly rand: () => number;

  constructor(seed: number) {
    this.rand = rng(seed);
  }

  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.rand() * xs.length)]!;
  }

  private money(min: number, max: number): string {
    return (min + Math.floor(this.rand() * (max - min) * 100) / 100).toFixed(2);
  }

  /** Runs `body` as one source transaction: one now() for updated_at, commit a little later. */
  transaction(body: () => void): void {
    this.clockUs += BigInt(1 + Math.floor(this.rand() * 3_600_000_000)); // up to an hour later, µs resolution
    this.tx = { us: this.clockUs, events: [] };
    body();
    const commit = iso(this.clockUs + BigInt(Math.floor(this.rand() * 5000)));
    for (const ev of this.tx.events) ev.commitTime = commit;
    this.events.push(...this.tx.events);
    this.tx = null;
  }

  private emit(table: TableName, op: 'c' | 'u' | 'd', key: string, after: FixtureRow | null): void {
    const tx = this.tx!;
    const before = this.rows[table].get(key) ?? null;
    this.lsn += BigInt(1 + Math.floor(this.rand() * 400));
    if (after) this.rows[table].set(key, after);
    else this.rows[table].delete(key);
    tx.events.push({ table, op, before: before && { ...before }, after: after && { ...after }, lsn: this.lsn, commitTime: '' });
  }

  private now(): string {
    return iso(this.tx!.us);
  }

  insertCustomer(): string {
    const id = String(this.nextId++);
    const first = this.pick(['Ann', 'Bo', 'Cy', 'Di']);
    this.emit('customers', 'c', id, {
      customer_id: id, email: ` ${first}.${id}@Example.COM `, first_name: first, last_name: this.pick(['Lee', 'Ng', 'Roe']),
      customer_segment: this.pick(SEGMENTS), created_at: this.now(), updated_at: this.now(),
    });
    return id;
  }

  updateCustomer(id: string, change: Partial<FixtureRow>): void {
    const cur = this.rows.customers.get(id)!;
    this.emit('customers', 'u', id, { ...cur, ...change, updated_at: this.now() });
  }

  segmentChange(id: string): void {
    const cur = this.rows.customers.get(id)!;
    this.updateCustomer(id, { customer_segment: this.pick(SEGMENTS.filter((s) => s !== cur.customer_segment)) });
  }

  deleteCustomer(id: string): void {
    this.emit('customers', 'd', id, null);
  }

  upsertProduct(id?: string): string {
    const pid = id ?? String(this.nextId++);
    const cur = this.rows.products.get(pid);
    this.emit('products', cur ? 'u' : 'c', pid, {
      product_id: pid, product_name: `p${pid}`, category: this.pick(CATEGORIES), price: this.money(1, 300),
      rating: this.rand() < 0.3 ? null : this.money(1, 5), updated_at: this.now(),
    });
    return pid;
  }

  insertOrder(customerId: string, productIds: string[], orderDate?: string): string {
    const id = String(this.nextId++);
    // Backdated order dates land before the customer's first version sometimes.
    const date = orderDate ?? iso(this.tx!.us - BigInt(Math.floor(this.rand() * 3 * 86_400_000_000)));
    this.emit('orders', 'c', id, { order_id: id, customer_id: customerId, order_date: date, status: 'placed', updated_at: this.now() });
    for (const pid of new Set(productIds)) {
      this.emit('order_items', 'c', `${id},${pid}`, {
        order_id: id, product_id: pid, quantity: 1 + Math.floor(this.rand() * 5),
        unit_price: this.rows.products.get(pid)?.price ?? this.money(1, 300), discount: this.pick(['0.00', '0.05', '0.15', '0.33', '0.50']),
      });
    }
    return id;
  }

  setStatus(orderId: string, status: string): void {
    const cur = this.rows.orders.get(orderId)!;
    this.emit('orders', 'u', orderId, { ...cur, status, updated_at: this.now() });
  }

  /** An order moved to another customer (a correction in the source). */
  moveOrder(orderId: string, customerId: string): void {
    const cur = this.rows.orders.get(orderId)!;
    this.emit('orders', 'u', orderId, { ...cur, customer_id: customerId, updated_at: this.now() });
  }

  updateItem(key: string): void {
    const cur = this.rows.order_items.get(key)!;
    this.emit('order_items', 'u', key, { ...cur, quantity: 1 + Math.floor(this.rand() * 9) });
  }

  deleteItem(key: string): void {
    this.emit('order_items', 'd', key, null);
  }

  deleteOrder(orderId: string): void {
    for (const key of [...this.rows.order_items.keys()].filter((k) => k.startsWith(`${orderId},`))) this.deleteItem(key);
    this.emit('orders', 'd', orderId, null);
  }

  customersWithoutOrders(): string[] {
    const withOrders = new Set([...this.rows.orders.values()].map((o) => String(o.customer_id)));
    return [...this.rows.customers.keys()].filter((c) => !withOrders.has(c));
  }

  /** A random mix of everything docs/contract.md §3 cares about. */
  randomWorkload(transactions: number): void {
    this.transaction(() => {
      for (let i = 0; i < 6; i++) this.upsertProduct();
      for (let i = 0; i < 5; i++) this.insertCustomer();
    });
    for (let i = 0; i < transactions; i++) {
      const r = this.rand();
      const customers = [...this.rows.customers.keys()];
      const products = [...this.rows.products.keys()];
      const orders = [...this.rows.orders.keys()];
      const items = [...this.rows.order_items.keys()];
      this.transaction(() => {
        if (r < 0.12) this.insertCustomer();
        else if (r < 0.22 && customers.length) this.segmentChange(this.pick(customers));
        else if (r < 0.27 && customers.length) this.updateCustomer(this.pick(customers), { email: `  NEW.${i}@x.IO` });
        else if (r < 0.30 && customers.length) {
          const c = this.pick(customers); // two changes in one transaction: one SCD2 change, the last wins
          this.segmentChange(c);
          this.segmentChange(c);
        } else if (r < 0.36) this.upsertProduct(products.length && this.rand() < 0.6 ? this.pick(products) : undefined);
        else if (r < 0.62 && customers.length && products.length) {
          const far = this.rand() < 0.03 ? '2035-06-01T12:00:00.000001Z' : undefined;
          this.insertOrder(this.pick(customers), [this.pick(products), this.pick(products), this.pick(products)].slice(0, 1 + Math.floor(this.rand() * 3)), far);
        } else if (r < 0.82 && orders.length) this.setStatus(this.pick(orders), this.pick(['shipped', 'delivered', 'cancelled', 'returned', 'placed']));
        else if (r < 0.87 && items.length) this.updateItem(this.pick(items));
        else if (r < 0.90 && items.length) this.deleteItem(this.pick(items));
        else if (r < 0.94 && orders.length) this.deleteOrder(this.pick(orders));
        else if (this.customersWithoutOrders().length) this.deleteCustomer(this.pick(this.customersWithoutOrders()));
      });
    }
  }
}
