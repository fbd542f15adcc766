/**
 * The source tables the warehouse consumer understands (docs/contract.md §1), with the
 * kind of each column. The kind decides how a decoded Avro value is checked
 * and normalised: ids to digit strings, money to exact decimal strings,
 * timestamps to canonical µs ISO strings. Columns a source lacks decode as
 * null; columns it adds are ignored (a new column is a compatible change).
 */
export type ColumnKind = 'bigint' | 'int' | 'text' | 'numeric' | 'timestamptz';

export interface TableSpec {
  name: TableName;
  key: readonly string[];
  columns: Readonly<Record<string, ColumnKind>>;
  /** Columns an insert or update must carry for the consumer to place it. */
  required: readonly string[];
}

export const TABLE_NAMES = ['customers', 'products', 'orders', 'order_items'] as const;
export type TableName = (typeof TABLE_NAMES)[number];

export const TABLES: Readonly<Record<TableName, TableSpec>> = {
  customers: {
    name: 'customers',
    key: ['customer_id'],
    columns: {
      customer_id: 'bigint', email: 'text', first_name: 'text', last_name: 'text',
      customer_segment: 'text', created_at: 'timestamptz', updated_at: 'timestamptz',
    },
    // updated_at is the event time of the SCD2 walk (docs/contract.md §3).
    required: ['customer_id', 'updated_at'],
  },
  products: {
    name: 'products',
    key: ['product_id'],
    columns: {
      product_id: 'bigint', product_name: 'text', category: 'text', price: 'numeric',
      rating: 'numeric', updated_at: 'timestamptz',
    },
    required: ['product_id'],
  },
  orders: {
    name: 'orders',
    key: ['order_id'],
    columns: {
      order_id: 'bigint', customer_id: 'bigint', order_date: 'timestamptz', status: 'text',
      updated_at: 'timestamptz',
    },
    required: ['order_id', 'updated_at'],
  },
  order_items: {
    name: 'order_items',
    key: ['order_id', 'product_id'],
    columns: {
      order_id: 'bigint', product_id: 'bigint', quantity: 'int', unit_price: 'numeric',
      discount: 'numeric',
    },
    required: ['order_id', 'product_id'],
  },
};

export function isTableName(v: unknown): v is TableName {
  return typeof v === 'string' && (TABLE_NAMES as readonly string[]).includes(v);
}

/** Normalised row: every column of the spec, as text (or null). */
export type Row = Record<string, string | null>;

export function rowKey(spec: TableSpec, row: Row): string {
  return spec.key.map((k) => row[k]).join(',');
}
