import type pg from 'pg';
import { namespaceLockSql, readStoredOffsets } from '../sinks/postgres/batch-tx.ts';
import { clvPayloadSql } from '../../consumers/warehouse/derived-sql.ts';
import { quoted, type WarehouseSchemas } from '../sinks/postgres/pool.ts';
import { sleep } from '../util/sleep.ts';

/**
 * The atomic swap of a replay (docs/operations.md, "Replay and rebuild"):
 * one transaction that moves the live tables of a consumer group out of the
 * way and the rebuilt ones in, hands the rebuild's offsets to the live group
 * and queues the CLV figures that changed for Redis.
 *
 * Tables move with ALTER TABLE ... SET SCHEMA rather than by renaming whole
 * schemas because the staging and analytics schemas also hold the
 * clickstream group's tables, which a warehouse replay must not touch.
 */

/** What a warehouse replay rebuilds and swaps (migrations 0001-0002). */
export const WAREHOUSE_OBJECTS = {
  stagingTables: ['stg_customers', 'stg_products', 'stg_orders', 'stg_order_items', 'stg_tombstones', 'customer_changes', 'order_status_changes'],
  analyticsTables: ['dim_date', 'dim_products', 'dim_customers', 'fact_orders', 'customer_lifetime_value', 'mart_sales', 'order_fulfillment'],
  analyticsViews: ['customer_lifetime_value_now'],
  analyticsFunctions: ['dim_date_rows(date, date)'],
} as const;

export interface SwapParams {
  live: WarehouseSchemas;
  rebuilt: WarehouseSchemas;
  /** Where the live objects go; dropped afterwards unless kept. */
  old: { staging: string; analytics: string };
  liveGroup: string;
  rebuildGroup: string;
  /** The live consumers' Redis key prefix: changed CLV figures are queued in their outbox. */
  redisKeyPrefix: string;
  /**
   * Called with the live group's offsets once they are frozen (the live
   * namespace lock is held): must return when the rebuild has applied at
   * least as far on every partition and its consumer has stopped.
   */
  rebuildCovers: (live: Map<string, string>) => Promise<void>;
  /** Longest wait for the table locks in one attempt; below deadlock_timeout so readers are never the deadlock victim. */
  lockWaitMs?: number;
  lockAttempts?: number;
  signal?: AbortSignal;
}

export interface SwapResult {
  liveOffsets: Record<string, string>;
  handedOver: Record<string, string>;
  clvChanged: number;
  clvRemoved: number;
  recreatedViews: string[];
}

export class SwapNotReadyError extends Error {}

const q = (s: string) => `"${s}"`;

/** Views outside the swapped set that read a swapped table (e.g. the clickstream's int_check_order reads stg_orders): re-pointed in the swap. */
async function dependentViews(client: pg.ClientBase, tables: string[], exclude: string[]): Promise<Array<{ name: string; def: string }>> {
  const { rows } = await client.query<{ name: string; def: string }>(
    `SELECT DISTINCT format('%I.%I', vn.nspname, v.relname) AS name, pg_get_viewdef(v.oid) AS def
     FROM pg_depend d
     JOIN pg_rewrite r ON r.oid = d.objid AND d.classid = 'pg_rewrite'::regclass
     JOIN pg_class v ON v.oid = r.ev_class AND v.relkind = 'v'
     JOIN pg_namespace vn ON vn.oid = v.relnamespace
     WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY($1::regclass[]) AND v.oid <> ALL($2::regclass[])`,
    [tables, exclude]);
  return rows;
}

export async function swapRebuilt(pool: pg.Pool, p: SwapParams): Promise<SwapResult> {
  const live = quoted(p.live);
  const rb = quoted(p.rebuilt);
  const meta = live.meta;
  const seq = `${meta}.clv_version_seq`;
  const o = WAREHOUSE_OBJECTS;
  const liveTables = [...o.stagingTables.map((t) => `${live.stg}.${t}`), ...o.analyticsTables.map((t) => `${live.an}.${t}`)];
  const rbTables = [...o.stagingTables.map((t) => `${rb.stg}.${t}`), ...o.analyticsTables.map((t) => `${rb.an}.${t}`)];
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    // Every name below is schema-qualified; an empty search path makes
    // pg_get_viewdef qualify every table too, so a re-created view binds to
    // the tables that hold the name after the move.
    await client.query(`SET LOCAL search_path = pg_catalog`);
    // 1. Freeze the live group: its batch transactions take this lock first.
    const lock = namespaceLockSql(p.live);
    await client.query(lock.sql, lock.params);
    const liveOffsets = await readStoredOffsets(client, p.live, p.liveGroup);
    await p.rebuildCovers(liveOffsets);
    // 2. The rebuild's consumer has stopped; its lock guards against a straggler all the same.
    const rbLock = namespaceLockSql(p.rebuilt);
    await client.query(rbLock.sql, rbLock.params);
    const rebuilt = await readStoredOffsets(client, p.rebuilt, p.rebuildGroup);
    for (const [tp, off] of liveOffsets) {
      const r = rebuilt.get(tp);
      if (r === undefined || BigInt(r) < BigInt(off)) throw new SwapNotReadyError(`rebuild at ${r ?? 'nothing'} on ${tp}, live group at ${off}`);
    }
    // 3. CLV versions, before any exclusive lock (readers are not held up by
    // it; the live table cannot change under the live lock): a row whose Redis figure is unchanged keeps its
    // version; a changed or removed one gets a version above every figure
    // the live group ever wrote (the sequence is shared), so the outbox
    // entries below win over anything already in Redis or still pending.
    const oldAn = live.an;
    const newAn = rb.an;
    await client.query(`CREATE TEMP TABLE clv_same ON COMMIT DROP AS
      SELECT n.customer_id::bigint AS customer_id, o.version::bigint AS version
      FROM (${clvPayloadSql(newAn)}) n JOIN (${clvPayloadSql(oldAn)}) o ON o.customer_id = n.customer_id AND o.payload = n.payload`);
    await client.query(`UPDATE ${newAn}.customer_lifetime_value v SET version = s.version FROM clv_same s WHERE s.customer_id = v.customer_id`);
    const changed = await client.query(`UPDATE ${newAn}.customer_lifetime_value v SET version = nextval('${seq}')
      WHERE NOT EXISTS (SELECT 1 FROM clv_same s WHERE s.customer_id = v.customer_id)`);
    await client.query(`INSERT INTO ${meta}.redis_outbox (key_prefix, customer_id, version, payload)
      SELECT $1, n.customer_id::bigint, n.version::bigint, n.payload FROM (${clvPayloadSql(newAn)}) n
      WHERE NOT EXISTS (SELECT 1 FROM clv_same s WHERE s.customer_id = n.customer_id::bigint)`, [p.redisKeyPrefix]);
    const removed = await client.query(`INSERT INTO ${meta}.redis_outbox (key_prefix, customer_id, version, payload)
      SELECT $1, o.customer_id, nextval('${seq}'), NULL FROM ${oldAn}.customer_lifetime_value o
      WHERE NOT EXISTS (SELECT 1 FROM ${newAn}.customer_lifetime_value n WHERE n.customer_id = o.customer_id)`, [p.redisKeyPrefix]);

    // 4. Exclusive locks on both sets of tables (and views reading them), in
    // one statement with a short timeout: a reader in the middle of a query
    // delays us, never the reverse, and we retry rather than deadlock.
    const liveViews = o.analyticsViews.map((v) => `${live.an}.${v}`);
    const external = await dependentViews(client, liveTables, liveViews);
    const toLock = [...liveTables, ...rbTables, ...liveViews, ...external.map((v) => v.name)];
    for (let attempt = 1; ; attempt++) {
      await client.query('SAVEPOINT locks');
      try {
        await client.query(`SET LOCAL statement_timeout = ${Math.floor(p.lockWaitMs ?? 500)}`);
        await client.query(`LOCK TABLE ${toLock.join(', ')} IN ACCESS EXCLUSIVE MODE`);
        await client.query('SET LOCAL statement_timeout = 0');
        break;
      } catch (err) {
        if ((err as { code?: string }).code !== '57014' || attempt >= (p.lockAttempts ?? 40) || p.signal?.aborted) throw err;
        await client.query('ROLLBACK TO SAVEPOINT locks');
        await sleep(50 + Math.floor(Math.random() * 200));
      }
    }
    // 5. Move: live out to the old schemas, rebuilt in.
    await client.query(`CREATE SCHEMA ${q(p.old.staging)}; CREATE SCHEMA ${q(p.old.analytics)}`);
    const moves: string[] = [];
    for (const t of o.stagingTables) moves.push(`ALTER TABLE ${live.stg}.${t} SET SCHEMA ${q(p.old.staging)}`, `ALTER TABLE ${rb.stg}.${t} SET SCHEMA ${live.stg}`);
    for (const t of o.analyticsTables) moves.push(`ALTER TABLE ${live.an}.${t} SET SCHEMA ${q(p.old.analytics)}`, `ALTER TABLE ${rb.an}.${t} SET SCHEMA ${live.an}`);
    for (const v of o.analyticsViews) moves.push(`ALTER VIEW ${live.an}.${v} SET SCHEMA ${q(p.old.analytics)}`, `ALTER VIEW ${rb.an}.${v} SET SCHEMA ${live.an}`);
    for (const f of o.analyticsFunctions) moves.push(`ALTER FUNCTION ${live.an}.${f} SET SCHEMA ${q(p.old.analytics)}`, `ALTER FUNCTION ${rb.an}.${f} SET SCHEMA ${live.an}`);
    await client.query(moves.join(';\n'));
    for (const v of external) await client.query(`CREATE OR REPLACE VIEW ${v.name} AS ${v.def}`);

    // 6. The live group resumes where the rebuilt tables are; what it already
    // fetched below that is dropped by its own offset guard (batch-tx.ts).
    await client.query(
      `INSERT INTO ${meta}.consumer_offsets (consumer_group, topic, partition, next_offset)
       SELECT $1, topic, partition, next_offset FROM ${meta}.consumer_offsets WHERE consumer_group = $2
       ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()`,
      [p.liveGroup, p.rebuildGroup]);
    await client.query(
      `INSERT INTO ${meta}.dead_letters (consumer_group, topic, partition, "offset", dlq_topic, error, created_at)
       SELECT $1, topic, partition, "offset", dlq_topic, error, created_at FROM ${meta}.dead_letters WHERE consumer_group = $2
       ON CONFLICT DO NOTHING`, [p.liveGroup, p.rebuildGroup]);
    await client.query('COMMIT');
    return {
      liveOffsets: Object.fromEntries(liveOffsets),
      handedOver: Object.fromEntries(rebuilt),
      clvChanged: changed.rowCount ?? 0,
      clvRemoved: removed.rowCount ?? 0,
      recreatedViews: external.map((v) => v.name),
    };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}
