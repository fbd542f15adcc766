import type pg from 'pg';
import { quoted, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { recomputeFromUs, SESSION_GAP_US, sessionize, type Session, type SessionEvent } from '../../src/transforms/sessions.ts';
import { formatInstantUs } from '../../src/transforms/time.ts';

/**
 * Per-key maintenance of the clickstream models from staging.stg_events,
 * inside the batch's transaction. For each anonymous_id with new events it
 * deletes and rebuilds every session from recomputeFromUs() on (the first
 * session a new event can touch), so merges and splits caused by late events
 * come out exactly as in a batch sessionization. Then the customers and
 * days those sessions belonged to, before or after, get their
 * int_last_session_per_customer and mart_cart_value rows rebuilt.
 */
const us = (col: string) => `(extract(epoch FROM ${col}) * 1000000)::bigint`;

export interface RecomputeStats {
  anonymousIds: number;
  eventsResessionized: number;
  sessionsDeleted: number;
  sessionsWritten: number;
  customers: number;
  days: number;
}

export async function recomputeSessions(client: pg.ClientBase, schemas: WarehouseSchemas, earliestNew: Map<string, bigint>): Promise<RecomputeStats> {
  const { stg, an } = quoted(schemas);
  const anons = [...earliestNew.keys()];
  const stats: RecomputeStats = { anonymousIds: anons.length, eventsResessionized: 0, sessionsDeleted: 0, sessionsWritten: 0, customers: 0, days: 0 };
  if (anons.length === 0) return stats;

  // Only sessions ending within one gap of the earliest new event can merge with it.
  const near = await client.query<{ anonymous_id: string; start_us: string; end_us: string }>(
    `SELECT s.anonymous_id, ${us('s.session_start')} AS start_us, ${us('s.session_end')} AS end_us
     FROM ${an}.int_session_bounds s JOIN unnest($1::text[], $2::timestamptz[]) AS a(anon, cutoff)
       ON s.anonymous_id = a.anon AND s.session_end >= a.cutoff`,
    [anons, anons.map((a) => formatInstantUs(earliestNew.get(a)! - SESSION_GAP_US))]);
  const existing = new Map<string, Array<{ startUs: bigint; endUs: bigint }>>();
  for (const r of near.rows) {
    const list = existing.get(r.anonymous_id) ?? [];
    list.push({ startUs: BigInt(r.start_us), endUs: BigInt(r.end_us) });
    existing.set(r.anonymous_id, list);
  }
  const from = anons.map((a) => formatInstantUs(recomputeFromUs(existing.get(a) ?? [], earliestNew.get(a)!)));
  const windowParams = [anons, from];
  const windowJoin = 'unnest($1::text[], $2::timestamptz[]) AS w(anon, from_ts)';

  const customers = new Set<string>();
  const days = new Set<string>();
  const removed = await client.query<{ session_id: string; customer_id: string | null; day: string }>(
    `DELETE FROM ${an}.int_session_bounds s USING ${windowJoin}
     WHERE s.anonymous_id = w.anon AND s.session_start >= w.from_ts
     RETURNING s.session_id, s.customer_id, ((s.session_start AT TIME ZONE 'UTC')::date)::text AS day`, windowParams);
  stats.sessionsDeleted = removed.rowCount ?? 0;
  for (const r of removed.rows) {
    if (r.customer_id !== null) customers.add(r.customer_id);
    days.add(r.day);
  }
  await client.query(`DELETE FROM ${an}.int_cart_value WHERE session_id = ANY($1::text[])`, [removed.rows.map((r) => r.session_id)]);
  await client.query(`DELETE FROM ${an}.fct_events f USING ${windowJoin} WHERE f.anonymous_id = w.anon AND f.occurred_at >= w.from_ts`, windowParams);

  const { rows } = await client.query<{ event_id: string; event_type: SessionEvent['eventType']; occurred_us: string; anonymous_id: string; customer_id: string | null; product_id: string | null; quantity: number | null; unit_price: string | null; order_id: string | null }>(
    `SELECT e.event_id::text, e.event_type, ${us('e.occurred_at')} AS occurred_us, e.anonymous_id, e.customer_id, e.product_id, e.quantity, e.unit_price::text, e.order_id
     FROM ${stg}.stg_events e JOIN ${windowJoin} ON e.anonymous_id = w.anon AND e.occurred_at >= w.from_ts
     WHERE NOT e._beyond_lateness`, windowParams);
  stats.eventsResessionized = rows.length;
  const sessions = sessionize(rows.map((r) => ({
    eventId: r.event_id, eventType: r.event_type, occurredUs: BigInt(r.occurred_us), anonymousId: r.anonymous_id,
    customerId: r.customer_id, productId: r.product_id, quantity: r.quantity, unitPrice: r.unit_price, orderId: r.order_id,
  })));
  stats.sessionsWritten = sessions.length;
  for (const s of sessions) {
    if (s.customerId !== null) customers.add(s.customerId);
    days.add(formatInstantUs(s.startUs).slice(0, 10));
  }
  await writeSessions(client, stg, an, sessions);
  stats.customers = customers.size;
  stats.days = days.size;
  await rebuildLastSessions(client, an, [...customers]);
  await rebuildMartDays(client, an, [...days]);
  return stats;
}

async function writeSessions(client: pg.ClientBase, stg: string, an: string, sessions: Session[]): Promise<void> {
  if (sessions.length === 0) return;
  const payload = JSON.stringify(sessions.map((s) => ({
    sid: s.sessionId, anon: s.anonymousId, cust: s.customerId, st: formatInstantUs(s.startUs), en: formatInstantUs(s.endUs), dur: s.durationSeconds,
    n: s.eventCount, pv: s.pageViews, prv: s.productViews, atc: s.addToCartCount, chk: s.reachedCheckout, conv: s.converted, cart: s.cartValue,
  })));
  await client.query(
    `INSERT INTO ${an}.int_session_bounds (session_id, anonymous_id, customer_id, session_start, session_end, duration_seconds, event_count, page_views, product_views, add_to_cart_count, reached_checkout, converted)
     SELECT sid, anon, cust, st, en, dur, n, pv, prv, atc, chk, conv
     FROM jsonb_to_recordset($1::jsonb) AS x(sid text, anon text, cust bigint, st timestamptz, en timestamptz, dur numeric, n int, pv int, prv int, atc int, chk boolean, conv boolean, cart numeric)`,
    [payload]);
  await client.query(
    `INSERT INTO ${an}.int_cart_value (session_id, anonymous_id, session_end, cart_value)
     SELECT sid, anon, en, cart FROM jsonb_to_recordset($1::jsonb) AS x(sid text, anon text, en timestamptz, cart numeric)`,
    [payload]);
  // Event columns are copied from staging, only the session is computed here.
  const members = JSON.stringify(sessions.flatMap((s) => s.eventIds.map((id) => ({ id, sid: s.sessionId }))));
  await client.query(
    `INSERT INTO ${an}.fct_events (event_id, session_id, date_key, event_type, occurred_at, anonymous_id, customer_id, product_id, product_key, quantity, unit_price, order_id, page_url)
     SELECT e.event_id, m.sid, to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYYMMDD')::int, e.event_type, e.occurred_at, e.anonymous_id, e.customer_id,
            e.product_id, md5(e.product_id::text), e.quantity, e.unit_price, e.order_id, e.page_url
     FROM jsonb_to_recordset($1::jsonb) AS m(id uuid, sid text) JOIN ${stg}.stg_events e ON e.event_id = m.id`,
    [members]);
}

/** The definition of int_last_session_per_customer over a set of sessions; shared with the batch recomputation. */
export function lastSessionSelectSql(sessions: string, where = 'customer_id IS NOT NULL'): string {
  return `SELECT DISTINCT ON (customer_id) customer_id, session_id, anonymous_id, session_start, session_end
          FROM ${sessions} WHERE ${where}
          ORDER BY customer_id, session_start DESC, session_id COLLATE "C" DESC`;
}

/** The definition of mart_cart_value over sessions joined to their cart values; shared with the batch recomputation. */
export function martCartValueSelectSql(sessions: string, carts: string, where = 'true'): string {
  return `SELECT (s.session_start AT TIME ZONE 'UTC')::date AS date_day,
                 count(*)::int AS sessions,
                 count(*) FILTER (WHERE c.cart_value > 0)::int AS sessions_with_cart,
                 count(*) FILTER (WHERE s.converted)::int AS converted_sessions,
                 coalesce(sum(c.cart_value) FILTER (WHERE c.cart_value > 0 AND NOT s.converted), 0) AS abandoned_cart_value,
                 round(count(*) FILTER (WHERE c.cart_value > 0 AND s.converted)::numeric / nullif(count(*) FILTER (WHERE c.cart_value > 0), 0), 4) AS conversion_rate
          FROM ${sessions} s JOIN ${carts} c ON c.session_id = s.session_id
          WHERE ${where}
          GROUP BY 1`;
}

async function rebuildLastSessions(client: pg.ClientBase, an: string, customers: string[]): Promise<void> {
  if (customers.length === 0) return;
  await client.query(`DELETE FROM ${an}.int_last_session_per_customer WHERE customer_id = ANY($1::bigint[])`, [customers]);
  await client.query(
    `INSERT INTO ${an}.int_last_session_per_customer (customer_id, session_id, anonymous_id, session_start, session_end)
     ${lastSessionSelectSql(`${an}.int_session_bounds`, 'customer_id = ANY($1::bigint[])')}`, [customers]);
}

async function rebuildMartDays(client: pg.ClientBase, an: string, days: string[]): Promise<void> {
  if (days.length === 0) return;
  await client.query(`DELETE FROM ${an}.mart_cart_value WHERE date_day = ANY($1::date[])`, [days]);
  await client.query(
    `INSERT INTO ${an}.mart_cart_value (date_day, sessions, sessions_with_cart, converted_sessions, abandoned_cart_value, conversion_rate)
     ${martCartValueSelectSql(`${an}.int_session_bounds`, `${an}.int_cart_value`, "(s.session_start AT TIME ZONE 'UTC')::date = ANY($1::date[])")}`, [days]);
}
