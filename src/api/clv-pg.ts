import type pg from 'pg';
import type { ClvRecord } from './clv-record.ts';
import type { TopBy } from './params.ts';

/**
 * Reads of analytics.customer_lifetime_value. Numerics and bigints come back
 * as text (cast in SQL, so no pg type parser ever turns them into floats) and
 * instants as canonical µs UTC text (a JS Date would drop the microseconds).
 */

const US_FORMAT = `'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'`;

function columns(): string {
  return `customer_id::text AS customer_id, customer_key, customer_segment,
    total_orders, total_items::text AS total_items,
    total_revenue::text AS total_revenue, avg_order_value::text AS avg_order_value,
    to_char(first_order_date AT TIME ZONE 'UTC', ${US_FORMAT}) AS first_order_date,
    to_char(last_order_date AT TIME ZONE 'UTC', ${US_FORMAT}) AS last_order_date,
    customer_lifetime_days, value_segment, frequency_segment, version::text AS version`;
}

interface ClvRow {
  customer_id: string;
  customer_key: string | null;
  customer_segment: string | null;
  total_orders: number;
  total_items: string;
  total_revenue: string;
  avg_order_value: string;
  first_order_date: string;
  last_order_date: string;
  customer_lifetime_days: number;
  value_segment: string;
  frequency_segment: string;
  version: string;
}

function toRecord(r: ClvRow): ClvRecord {
  return {
    customerId: r.customer_id,
    customerKey: r.customer_key,
    customerSegment: r.customer_segment,
    totalOrders: r.total_orders,
    totalItems: Number(r.total_items),
    totalRevenue: r.total_revenue,
    avgOrderValue: r.avg_order_value,
    firstOrderDate: r.first_order_date,
    lastOrderDate: r.last_order_date,
    customerLifetimeDays: r.customer_lifetime_days,
    valueSegment: r.value_segment,
    frequencySegment: r.frequency_segment,
    version: r.version,
  };
}

// customer_id breaks ties so equal figures list in a stable order across calls.
// Qualified with the table alias: a bare name in ORDER BY would mean the
// output column, which is the ::text rendering, and sort money as text.
const ORDER_BY: Record<TopBy, string> = {
  revenue: 'c.total_revenue DESC, c.customer_id',
  orders: 'c.total_orders DESC, c.customer_id',
  items: 'c.total_items DESC, c.customer_id',
};

export class ClvPostgres {
  private readonly table: string;

  /** `schema` must already be a validated plain identifier (see loadApiConfig). */
  constructor(
    private readonly pool: pg.Pool,
    schema: string,
  ) {
    this.table = `"${schema}".customer_lifetime_value`;
  }

  async byId(customerId: string): Promise<ClvRecord | undefined> {
    const { rows } = await this.pool.query<ClvRow>({
      // A named statement is parsed and planned once per connection: this is the hot fallback path.
      name: `clv-by-id:${this.table}`,
      text: `SELECT ${columns()} FROM ${this.table} WHERE customer_id = $1`,
      values: [customerId],
    });
    return rows[0] && toRecord(rows[0]);
  }

  async top(by: TopBy, limit: number): Promise<ClvRecord[]> {
    const { rows } = await this.pool.query<ClvRow>(
      `SELECT ${columns()} FROM ${this.table} c ORDER BY ${ORDER_BY[by]} LIMIT $1`,
      [limit],
    );
    return rows.map(toRecord);
  }

  /** Of the given ids, those that have a CLV row. */
  async existing(customerIds: string[]): Promise<Set<string>> {
    if (customerIds.length === 0) return new Set();
    const { rows } = await this.pool.query<{ id: string }>(
      `SELECT customer_id::text AS id FROM ${this.table} WHERE customer_id = ANY($1::bigint[])`,
      [customerIds],
    );
    return new Set(rows.map((r) => r.id));
  }

  /** Customers per value × frequency segment (the status page's distribution). */
  async segments(): Promise<Array<{ valueSegment: string; frequencySegment: string; customers: number }>> {
    const { rows } = await this.pool.query<{ v: string; f: string; n: number }>(
      `SELECT value_segment AS v, frequency_segment AS f, count(*)::int AS n FROM ${this.table} GROUP BY 1, 2 ORDER BY 1, 2`);
    return rows.map((r) => ({ valueSegment: r.v, frequencySegment: r.f, customers: r.n }));
  }

  async ping(): Promise<void> {
    await this.pool.query('SELECT 1');
  }
}
