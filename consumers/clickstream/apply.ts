import type pg from 'pg';
import type { Logger } from '../../src/logger.ts';
import { readStoredOffset, recordBatchProgress, type DeadLetterNote } from '../../src/sinks/postgres/consumer-progress.ts';
import { quoted, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { classifyLateness } from '../../src/transforms/sessions.ts';
import { formatInstantUs } from '../../src/transforms/time.ts';
import { recomputeSessions, type RecomputeStats } from './recompute.ts';
import type { ClickEvent } from './validate.ts';

/**
 * One slice of a Kafka batch (one topic-partition) as one Postgres
 * transaction: staging insert (dedup on event_id), lateness flags, session
 * recomputation, dead-letter notes and the partition's next offset commit
 * together, so a crash leaves all or nothing and a redelivery is a no-op.
 */
export interface ClickMessage {
  offset: string;
  /** null for messages that went to the dead-letter topic: they only advance the offset. */
  event: ClickEvent | null;
}

export interface ClickBatch {
  group: string;
  topic: string;
  partition: number;
  messages: ClickMessage[];
  deadLetters: DeadLetterNote[];
}

export interface ClickBatchOutcome {
  nextOffset: string;
  inserted: number;
  duplicates: number;
  beyondLateness: number;
  skippedAsApplied: number;
  recompute: RecomputeStats | null;
}

/**
 * Batches of one clickstream namespace serialise on this lock: an id's
 * events share a partition, but a customer's sessions (several anonymous
 * ids) and a day's mart row do not, and two transactions rebuilding them
 * from each other's uncommitted state would leave stale rows.
 */
export function clickstreamLockKey(schemas: WarehouseSchemas): string {
  return `cdc-clickstream:${schemas.staging}/${schemas.analytics}`;
}

export async function applyClickBatch(pool: pg.Pool, schemas: WarehouseSchemas, input: ClickBatch, allowedLatenessUs: bigint, log?: Logger): Promise<ClickBatchOutcome> {
  const { stg } = quoted(schemas);
  const last = input.messages[input.messages.length - 1];
  if (!last) throw new Error('empty batch');
  const nextOffset = (BigInt(last.offset) + 1n).toString();
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [clickstreamLockKey(schemas)]);
    // A redelivery after a crash between the Postgres and the Kafka commit:
    // what an earlier transaction stored is skipped, by offset.
    const storedOffset = await readStoredOffset(client, schemas, input.group, input.topic, input.partition);
    const fresh = input.messages.filter((m) => BigInt(m.offset) >= storedOffset);
    if (fresh.length === 0) {
      await client.query('ROLLBACK');
      return { nextOffset: storedOffset.toString(), inserted: 0, duplicates: 0, beyondLateness: 0, skippedAsApplied: input.messages.length, recompute: null };
    }

    // Duplicate deliveries: within the slice the first offset wins, and
    // events staging already holds are not inserted again (nor re-flagged).
    const byId = new Map<string, { offset: string; event: ClickEvent }>();
    for (const m of fresh) if (m.event && !byId.has(m.event.eventId)) byId.set(m.event.eventId, { offset: m.offset, event: m.event });
    const known = await client.query<{ event_id: string }>(`SELECT event_id::text FROM ${stg}.stg_events WHERE event_id = ANY($1::uuid[])`, [[...byId.keys()]]);
    for (const r of known.rows) byId.delete(r.event_id);
    const candidates = [...byId.values()];
    const duplicates = fresh.filter((m) => m.event).length - candidates.length;

    const anons = [...new Set(candidates.map((c) => c.event.anonymousId))];
    const wm = await client.query<{ anonymous_id: string; wm_us: string }>(
      `SELECT anonymous_id, (extract(epoch FROM max(occurred_at)) * 1000000)::bigint AS wm_us
       FROM ${stg}.stg_events WHERE anonymous_id = ANY($1::text[]) AND NOT _beyond_lateness GROUP BY anonymous_id`, [anons]);
    const watermarks = new Map(wm.rows.map((r) => [r.anonymous_id, BigInt(r.wm_us)]));
    const late = classifyLateness(candidates.map((c) => c.event), watermarks, allowedLatenessUs);

    if (candidates.length > 0) {
      await client.query(
        `INSERT INTO ${stg}.stg_events (event_id, event_type, occurred_at, anonymous_id, customer_id, product_id, quantity, unit_price, order_id, page_url, _beyond_lateness, _kafka_partition, _kafka_offset)
         SELECT id, typ, at, anon, cust, prod, qty, price, ord, url, late, $2, off
         FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, typ text, at timestamptz, anon text, cust bigint, prod bigint, qty int, price numeric, ord bigint, url text, late boolean, off bigint)
         ON CONFLICT (event_id) DO NOTHING`,
        [JSON.stringify(candidates.map(({ offset, event: e }) => ({
          id: e.eventId, typ: e.eventType, at: formatInstantUs(e.occurredUs), anon: e.anonymousId, cust: e.customerId, prod: e.productId,
          qty: e.quantity, price: e.unitPrice, ord: e.orderId, url: e.pageUrl, late: late.has(e.eventId), off: offset,
        }))), input.partition]);
    }
    if (late.size > 0) {
      // Not silent: kept in staging with the flag, counted and logged (docs/clickstream.md, "Late events").
      log?.warn({ topic: input.topic, partition: input.partition, count: late.size, eventIds: [...late].slice(0, 10) }, 'events beyond the allowed lateness: staged with _beyond_lateness, left out of sessions');
    }

    const earliest = new Map<string, bigint>();
    for (const { event: e } of candidates) {
      if (late.has(e.eventId)) continue;
      const cur = earliest.get(e.anonymousId);
      if (cur === undefined || e.occurredUs < cur) earliest.set(e.anonymousId, e.occurredUs);
    }
    const recompute = await recomputeSessions(client, schemas, earliest);

    await recordBatchProgress(client, schemas, { ...input, nextOffset }, new Set(fresh.map((m) => m.offset)));
    await client.query('COMMIT');
    return { nextOffset, inserted: candidates.length, duplicates, beyondLateness: late.size, skippedAsApplied: input.messages.length - fresh.length, recompute };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}
