import type pg from 'pg';
import type { TableName } from '../../src/consumer/tables.ts';
import type { CanonicalRecord, FieldDiff } from './debezium-compare.ts';

/**
 * The workload of the real-Debezium test: inserts, customer segment changes,
 * order status changes, deletes, and a TOASTed product name (22,400 chars,
 * stored out of line uncompressed) updated once without and once with a
 * change to it, all under the demo schema's REPLICA IDENTITY FULL. Returns
 * the number of Kafka records each table's topic must receive (one per row
 * change, plus a tombstone per delete).
 */
export async function runWorkload(src: pg.Pool, s: string): Promise<Record<TableName, number>> {
  const counts: Record<TableName, number> = { customers: 0, products: 0, orders: 0, order_items: 0 };
  const run = async (table: TableName, sql: string, params: unknown[] = []) => {
    const r = await src.query(sql, params);
    counts[table] += (r.rowCount ?? 0) * (/^\s*DELETE/i.test(sql) ? 2 : 1);
  };
  await src.query(`ALTER TABLE ${s}.products ALTER COLUMN product_name SET STORAGE EXTERNAL`);
  const segments = ['bronze', 'silver', 'gold', 'platinum'];
  await run('customers', `INSERT INTO ${s}.customers (customer_id, email, first_name, last_name, customer_segment)
    SELECT g, 'c' || g || '@x.io', 'F' || g, 'L' || g, (ARRAY['bronze','silver','gold','platinum'])[1 + g % 4] FROM generate_series(1, 24) g`);
  // 9007199254740993 = 2^53 + 1: must stay exact through JSON.
  await run('customers', `INSERT INTO ${s}.customers (customer_id, email, first_name, last_name, customer_segment) VALUES (9007199254740993, 'big@x.io', 'Big', 'Id', 'gold')`);
  await run('products', `INSERT INTO ${s}.products (product_id, product_name, category, price, rating)
    SELECT g, 'P' || g, (ARRAY['books','games','tools'])[1 + g % 3], (g * 7.33)::numeric(10,2), CASE WHEN g % 3 = 0 THEN NULL ELSE (1 + g % 4)::numeric(3,2) + 0.25 END FROM generate_series(1, 12) g`);
  await run('products', `INSERT INTO ${s}.products (product_id, product_name, category, price, rating)
    VALUES (99, (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 700) g), 'books', 99999999.99, 5.00)`);
  for (let o = 1; o <= 40; o++) {
    await src.query('BEGIN');
    await run('orders', `INSERT INTO ${s}.orders (order_id, customer_id, order_date, status) VALUES ($1, $2, now() - ($3 || ' hours')::interval, 'placed')`, [o, 1 + (o % 24), String(o * 7)]);
    await run('order_items', `INSERT INTO ${s}.order_items (order_id, product_id, quantity, unit_price, discount)
      SELECT $1, p, 1 + (p + $1) % 3, (p * 7.33)::numeric(10,2), CASE WHEN p % 2 = 0 THEN 0.15 ELSE 0 END FROM generate_series(1 + $1 % 10, 2 + $1 % 10) p`, [o]);
    await src.query('COMMIT');
  }
  await run('order_items', `INSERT INTO ${s}.order_items VALUES (40, 99, 2, 99999999.99, 0.99)`);
  for (let c = 1; c <= 24; c += 3) {
    await run('customers', `UPDATE ${s}.customers SET customer_segment = $2 WHERE customer_id = $1`, [c, segments[(c + 1) % 4]]);
  }
  for (let o = 1; o <= 40; o += 2) await run('orders', `UPDATE ${s}.orders SET status = 'shipped' WHERE order_id = $1`, [o]);
  for (let o = 1; o <= 40; o += 4) await run('orders', `UPDATE ${s}.orders SET status = 'delivered' WHERE order_id = $1`, [o]);
  await run('orders', `UPDATE ${s}.orders SET status = 'cancelled' WHERE order_id IN (6, 8)`);
  await run('products', `UPDATE ${s}.products SET price = price + 1.01 WHERE product_id IN (2, 5)`);
  // TOAST: unchanged (the value comes from the before image), then changed.
  await run('products', `UPDATE ${s}.products SET price = 12345.67, category = 'games' WHERE product_id = 99`);
  await run('products', `UPDATE ${s}.products SET product_name = product_name || 'x' WHERE product_id = 99`);
  await run('order_items', `UPDATE ${s}.order_items SET quantity = quantity + 1 WHERE order_id = 3`);
  // Deletes: items first (no cascades, so every change is counted), then their orders, then customers without orders.
  await run('order_items', `DELETE FROM ${s}.order_items WHERE order_id IN (10, 11)`);
  await run('orders', `DELETE FROM ${s}.orders WHERE order_id IN (10, 11)`);
  await run('order_items', `DELETE FROM ${s}.order_items WHERE order_id = 12 AND product_id = 4`);
  await run('customers', `DELETE FROM ${s}.customers WHERE customer_id = 9007199254740993`);
  await src.query('BEGIN');
  await run('customers', `UPDATE ${s}.customers SET email = 'new' || customer_id || '@x.io', customer_segment = 'platinum' WHERE customer_id IN (4, 5)`);
  await run('orders', `UPDATE ${s}.orders SET status = 'returned' WHERE order_id = 5`);
  await src.query('COMMIT');
  return counts;
}

/**
 * Differences from Debezium the field-by-field comparison allows, each
 * explained in docs/encodings.md "Differences from Debezium". A difference
 * is allowed only in the shape `when` describes (the two values and both
 * records), so drift inside an allowed field still fails. `mustDiffer`: the
 * test also checks the difference is still there, so a fixed one is taken
 * off the list.
 */
export interface AllowedDifference {
  field: RegExp;
  why: string;
  mustDiffer: boolean;
  when: (d: FieldDiff, ours: CanonicalRecord, theirs: CanonicalRecord) => boolean;
}

const DIGITS = /^\d+$/;

export const DEBEZIUM_ALLOWED_DIFFERENCES: AllowedDifference[] = [
  {
    field: /^(ts_ms|ts_us|ts_ns)$/, why: 'envelope times are when each producer processed the change', mustDiffer: true,
    // Both filled (never null on our side), as integers.
    when: (d) => DIGITS.test(d.ours ?? '') && DIGITS.test(d.theirs ?? ''),
  },
  {
    field: /^source\.name$/, why: 'the topic prefix, different by construction in the test', mustDiffer: true,
    when: (d) => !!d.ours && !!d.theirs,
  },
  {
    field: /^source\.version$/, why: 'our capture states its own version', mustDiffer: true,
    when: (d) => !!d.ours && d.theirs === '3.0.8.Final',
  },
  {
    field: /^transaction\.id$/, mustDiffer: true,
    why: "Debezium 3.0.8 writes txId:<this event's LSN>, so the id changes within a transaction; ours is txId:<commit LSN>, one per transaction, as the transaction topic's",
    when: (d, o, t) => {
      const [oTx, oLsn] = (d.ours ?? '').split(':');
      const [tTx, tLsn] = (d.theirs ?? '').split(':');
      const tx = o.fields['source.txId'];
      return oTx === tx && tTx === tx && tLsn === t.fields['source.lsn'] && DIGITS.test(oLsn ?? '') && BigInt(oLsn!) >= BigInt(tLsn!);
    },
  },
  {
    field: /^source\.sequence$/, mustDiffer: false,
    why: 'Debezium writes [null, LSN] until it has processed a commit after its start; ours starts from the slot position (docs/encodings.md)',
    // Only that: their first element null, both second elements this event's LSN.
    when: (d, o) => {
      const lsn = o.fields['source.lsn'];
      const m = /^\["(\d+)","(\d+)"\]$/.exec(d.ours ?? '');
      return d.theirs === `[null,"${lsn}"]` && !!m && m[2] === lsn;
    },
  },
];

/** True when the list allows this difference, in this shape. */
export function allowedDifference(d: FieldDiff, ours: CanonicalRecord, theirs: CanonicalRecord): boolean {
  return DEBEZIUM_ALLOWED_DIFFERENCES.some((a) => a.field.test(d.field) && a.when(d, ours, theirs));
}
