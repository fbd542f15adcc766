import type pg from 'pg';
import { quoted, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { clickstreamLockKey } from './apply.ts';
import { lastSessionSelectSql, martCartValueSelectSql } from './recompute.ts';

/**
 * The batch recomputation of every clickstream model from stg_events, as
 * plain SQL (docs/contract.md §4: the streaming result must equal it row for row).
 * Sessionization here is set-based window SQL, independent of the
 * TypeScript walk the consumer uses (src/transforms/sessions.ts); the two
 * small aggregations over finished sessions (last session per customer,
 * the daily mart) share their definition with the consumer. Used by the
 * integration tests and by `rebuildClickstream` (docs/clickstream.md).
 */
const ISO = `'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'`;

function ctes(stg: string): string {
  return `
    ev AS (
      SELECT e.*, CASE WHEN lag(e.occurred_at) OVER w IS NULL OR e.occurred_at - lag(e.occurred_at) OVER w > interval '30 minutes' THEN 1 ELSE 0 END AS is_start
      FROM ${stg}.stg_events e WHERE NOT e._beyond_lateness
      WINDOW w AS (PARTITION BY e.anonymous_id ORDER BY e.occurred_at, e.event_id)
    ),
    numbered AS (
      SELECT ev.*, sum(is_start) OVER (PARTITION BY anonymous_id ORDER BY occurred_at, event_id) AS sno FROM ev
    ),
    sessioned AS (
      SELECT n.*, md5(n.anonymous_id || '-' || to_char(min(n.occurred_at) OVER (PARTITION BY n.anonymous_id, n.sno) AT TIME ZONE 'UTC', ${ISO})) AS session_id
      FROM numbered n
    ),
    b_sessions AS (
      SELECT session_id, anonymous_id,
             (array_agg(customer_id ORDER BY occurred_at DESC, event_id DESC) FILTER (WHERE customer_id IS NOT NULL))[1] AS customer_id,
             min(occurred_at) AS session_start, max(occurred_at) AS session_end,
             extract(epoch FROM max(occurred_at) - min(occurred_at)) AS duration_seconds,
             count(*)::int AS event_count,
             count(*) FILTER (WHERE event_type = 'page_view')::int AS page_views,
             count(*) FILTER (WHERE event_type = 'product_view')::int AS product_views,
             count(*) FILTER (WHERE event_type = 'add_to_cart')::int AS add_to_cart_count,
             bool_or(event_type = 'checkout_started') AS reached_checkout,
             bool_or(event_type = 'order_placed') AS converted
      FROM sessioned GROUP BY session_id, anonymous_id
    ),
    b_carts AS (
      SELECT session_id, anonymous_id, max(occurred_at) AS session_end,
             greatest(coalesce(sum(CASE event_type WHEN 'add_to_cart' THEN quantity * unit_price
                                                   WHEN 'remove_from_cart' THEN -(quantity * unit_price) END), 0), 0) AS cart_value
      FROM sessioned GROUP BY session_id, anonymous_id
    )`;
}

export interface ModelSql {
  table: string;
  /** The batch definition and the stored rows, with the same columns in the same order. */
  expected: string;
  actual: string;
}

export function clickstreamModels(schemas: WarehouseSchemas): ModelSql[] {
  const { stg, an } = quoted(schemas);
  const w = (select: string) => `WITH ${ctes(stg)} ${select}`;
  const sessionCols = 'session_id, anonymous_id, customer_id, session_start, session_end, duration_seconds, event_count, page_views, product_views, add_to_cart_count, reached_checkout, converted';
  const eventCols = 'event_id, session_id, date_key, event_type, occurred_at, anonymous_id, customer_id, product_id, product_key, quantity, unit_price, order_id, page_url';
  const lastCols = 'customer_id, session_id, anonymous_id, session_start, session_end';
  const martCols = 'date_day, sessions, sessions_with_cart, converted_sessions, abandoned_cart_value, conversion_rate';
  return [
    {
      table: 'fct_events',
      expected: w(`SELECT event_id, session_id, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYYMMDD')::int AS date_key, event_type, occurred_at, anonymous_id, customer_id,
                          product_id, md5(product_id::text) AS product_key, quantity, unit_price, order_id, page_url FROM sessioned`),
      actual: `SELECT ${eventCols} FROM ${an}.fct_events`,
    },
    { table: 'int_session_bounds', expected: w(`SELECT ${sessionCols} FROM b_sessions`), actual: `SELECT ${sessionCols} FROM ${an}.int_session_bounds` },
    { table: 'int_cart_value', expected: w('SELECT session_id, anonymous_id, session_end, cart_value FROM b_carts'), actual: `SELECT session_id, anonymous_id, session_end, cart_value FROM ${an}.int_cart_value` },
    { table: 'int_last_session_per_customer', expected: w(lastSessionSelectSql('b_sessions')), actual: `SELECT ${lastCols} FROM ${an}.int_last_session_per_customer` },
    { table: 'mart_cart_value', expected: w(martCartValueSelectSql('b_sessions', 'b_carts')), actual: `SELECT ${martCols} FROM ${an}.mart_cart_value` },
    {
      table: 'int_check_order',
      expected: w(`SELECT s.session_id, s.anonymous_id, s.customer_id, s.converted AS order_placed, o.order_id, (so.order_id IS NOT NULL) AS order_exists
                   FROM b_sessions s
                   LEFT JOIN (SELECT DISTINCT ON (session_id) session_id, order_id FROM sessioned WHERE event_type = 'order_placed'
                              ORDER BY session_id, occurred_at DESC, event_id DESC) o ON o.session_id = s.session_id
                   LEFT JOIN ${stg}.stg_orders so ON so.order_id = o.order_id
                   WHERE s.reached_checkout`),
      actual: `SELECT session_id, anonymous_id, customer_id, order_placed, order_id, order_exists FROM ${an}.int_check_order`,
    },
  ];
}

export interface ModelCheck {
  table: string;
  expectedRows: number;
  actualRows: number;
  /** Rows the batch has and the table lacks, and the reverse (multiset difference). */
  missing: number;
  unexpected: number;
  sample: unknown[];
}

export async function verifyClickstream(client: pg.ClientBase, schemas: WarehouseSchemas): Promise<ModelCheck[]> {
  const out: ModelCheck[] = [];
  for (const m of clickstreamModels(schemas)) {
    const { rows } = await client.query<{ e: string; a: string; missing: string; unexpected: string }>(
      `WITH e AS (${m.expected}), a AS (${m.actual})
       SELECT (SELECT count(*) FROM e) AS e, (SELECT count(*) FROM a) AS a,
              (SELECT count(*) FROM (SELECT * FROM e EXCEPT ALL SELECT * FROM a) x) AS missing,
              (SELECT count(*) FROM (SELECT * FROM a EXCEPT ALL SELECT * FROM e) y) AS unexpected`);
    const r = rows[0]!;
    let sample: unknown[] = [];
    if (r.missing !== '0' || r.unexpected !== '0') {
      const s = await client.query(
        `WITH e AS (${m.expected}), a AS (${m.actual})
         (SELECT 'missing' AS diff, x.* FROM (SELECT * FROM e EXCEPT ALL SELECT * FROM a) x LIMIT 5)
         UNION ALL (SELECT 'unexpected', y.* FROM (SELECT * FROM a EXCEPT ALL SELECT * FROM e) y LIMIT 5)`);
      sample = s.rows;
    }
    out.push({ table: m.table, expectedRows: Number(r.e), actualRows: Number(r.a), missing: Number(r.missing), unexpected: Number(r.unexpected), sample });
  }
  return out;
}

/**
 * Full refresh of the stored models from stg_events, in the caller's
 * transaction: after changing `_beyond_lateness` flags by hand, or to
 * repair tables. Takes the consumer's lock so it cannot interleave with a
 * batch.
 */
export async function rebuildClickstream(client: pg.ClientBase, schemas: WarehouseSchemas): Promise<void> {
  const { an } = quoted(schemas);
  await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [clickstreamLockKey(schemas)]);
  const columns: Record<string, string> = {};
  for (const m of clickstreamModels(schemas)) {
    if (m.table === 'int_check_order') continue; // a view
    columns[m.table] = m.actual.replace(/^SELECT (.*) FROM .*$/s, '$1');
    await client.query(`DELETE FROM ${an}.${m.table}`);
    await client.query(`INSERT INTO ${an}.${m.table} (${columns[m.table]}) ${m.expected}`);
  }
}
