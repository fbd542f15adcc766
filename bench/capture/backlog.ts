import type pg from 'pg';

/**
 * Writes a backlog like BENCHMARKS.md's Debezium run: customers, products,
 * then orders with their items (avg ~5.6 items/order) in transactions of
 * ~1,000 rows, realistic widths (emails, names, timestamps, decimals).
 */
export async function writeBacklog(pool: pg.Pool, schema: string, totalChanges: number, log = (_: string) => {}): Promise<{ changes: number; endLsn: string }> {
  const customers = Math.max(100, Math.round(totalChanges / 100));
  const products = 1000;
  await pool.query(`INSERT INTO ${schema}.customers (customer_id, email, first_name, last_name, customer_segment, created_at)
    SELECT g, 'customer' || g || '@example.com', 'First' || g, 'Lastname' || g, (ARRAY['bronze','silver','gold','platinum'])[1 + g % 4],
           now() - (g || ' minutes')::interval FROM generate_series(1, ${customers}) g`);
  await pool.query(`INSERT INTO ${schema}.products (product_id, product_name, category, price, rating)
    SELECT g, 'Product number ' || g, (ARRAY['home','office','garden','toys','books'])[1 + g % 5], (g % 500) + 0.99, CASE WHEN g % 3 = 0 THEN NULL ELSE ((g % 500) / 100.0)::numeric(3,2) END
    FROM generate_series(1, ${products}) g`);
  let changes = customers + products;
  let orderId = 0;
  while (changes < totalChanges) {
    // one transaction: ~150 orders and their items (~1,000 rows)
    const n = 150;
    const lo = orderId + 1;
    const hi = orderId + n;
    orderId = hi;
    const { rows } = await pool.query<{ c: number }>(`WITH o AS (
        INSERT INTO ${schema}.orders (order_id, customer_id, order_date, status)
        SELECT g, 1 + (g * 7919) % ${customers}, now() - ((g % 1000) || ' hours')::interval, (ARRAY['placed','shipped','delivered'])[1 + g % 3]
        FROM generate_series(${lo}, ${hi}) g RETURNING order_id),
      i AS (
        INSERT INTO ${schema}.order_items (order_id, product_id, quantity, unit_price, discount)
        SELECT o.order_id, 1 + ((o.order_id * 31 + k * 97) % ${products}), 1 + (k % 4), ((o.order_id + k) % 500) + 0.49, ((k % 4) * 0.05)::numeric(4,2)
        FROM o, generate_series(1, 1 + (o.order_id % 10)) k RETURNING 1)
      SELECT (SELECT count(*) FROM o)::int + (SELECT count(*) FROM i)::int AS c`);
    changes += rows[0]!.c;
    if (orderId % 30000 === 0) log(`backlog: ${changes} changes`);
  }
  const { rows } = await pool.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l');
  return { changes, endLsn: rows[0]!.l };
}
