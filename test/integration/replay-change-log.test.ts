import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import type { RowChange } from '../../src/consumer/envelope.ts';
import { TABLE_NAMES, type TableName } from '../../src/consumer/tables.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { applyBatch } from '../../consumers/warehouse/apply.ts';
import { fullRefresh } from '../../consumers/warehouse/full-refresh.ts';
import type { BatchMessage } from '../../src/sinks/postgres/batch-tx.ts';
import { createWarehousePool, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { fixtureChange, rng, ShopSim } from '../helpers/debezium-fixtures.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * The replay's change log (consumers/warehouse/change-log.ts) against the
 * per-batch path it replaces: the same streams (with redeliveries at new
 * offsets, and optionally a truncate and an unchanged-TOAST change, which
 * materialize the log into non-empty staging mid-stream) applied once as a
 * replay does (deferDerived, then fullRefresh) and once as the live group
 * does (per-key recomputation). Staging, history and every derived table
 * must be equal row for row; the SCD2 versions of dim_customers included.
 */
const STAGING = ['stg_customers', 'stg_products', 'stg_orders', 'stg_order_items', 'customer_changes', 'order_status_changes'];
const DERIVED = ['dim_products', 'dim_customers', 'fact_orders', 'customer_lifetime_value', 'mart_sales', 'order_fulfillment', 'dim_date'];

function streams(seed: number, extras: boolean): Map<TableName, BatchMessage[]> {
  const sim = new ShopSim(seed);
  sim.randomWorkload(500);
  const rand = rng(seed + 1);
  const out = new Map<TableName, BatchMessage[]>();
  const push = (t: TableName, ch: RowChange) => {
    const s = out.get(t) ?? [];
    s.push({ offset: String(s.length), change: ch });
    out.set(t, s);
  };
  for (const ev of sim.events) {
    const ch = fixtureChange(ev);
    if (extras && ev.table === 'customers' && ch.op === 'u' && rand() < 0.1) {
      // An unchanged TOASTed email: staging keeps the one it holds.
      push('customers', { ...ch, after: { ...ch.after!, email: null }, unavailable: ['email'] });
      continue;
    }
    push(ev.table, ch);
    if (rand() < 0.05) push(ev.table, ch); // a producer retry at a new offset
  }
  if (extras) {
    const items = out.get('order_items')!;
    const mid = items[Math.floor(items.length / 2)]!.change!;
    // A truncate of order_items half-way (its LSN between its neighbours'): the rows written before it go.
    const t: RowChange = { ...mid, op: 't', before: null, after: null, lsn: mid.lsn, seq: mid.seq, unavailable: [] };
    items.splice(Math.floor(items.length / 2) + 1, 0, { offset: '', change: t });
    items.forEach((m, i) => { m.offset = String(i); });
  }
  return out;
}

async function rows(pool: pg.Pool, schema: string, table: string): Promise<string[]> {
  const { rows: r } = await pool.query<{ j: string }>(`SELECT (to_jsonb(t) - '_ingested_at' - 'version')::text AS j FROM "${schema}".${table} t`);
  return r.map((x) => x.j).sort();
}

describe('replay change log', () => {
  let pool: pg.Pool;
  const made: WarehouseSchemas[] = [];

  async function fresh(tag: string): Promise<WarehouseSchemas> {
    const id = uniqueId(tag);
    const s: WarehouseSchemas = { staging: `${id}_stg`, analytics: `${id}_an`, meta: `${id}_meta` };
    made.push(s);
    await migrate(pool, 'warehouse', { schemas: warehouseSchemaNames(s) });
    return s;
  }

  async function apply(schemas: WarehouseSchemas, input: Map<TableName, BatchMessage[]>, deferDerived: boolean): Promise<void> {
    for (const table of TABLE_NAMES) {
      const msgs = input.get(table) ?? [];
      for (let i = 0; i < msgs.length; i += 150) {
        await applyBatch(pool, schemas, { group: 'g', topic: table, partition: 0, messages: msgs.slice(i, i + 150), deadLetters: [] }, { redisKeyPrefix: `${schemas.meta}:`, deferDerived });
      }
    }
    if (deferDerived) await fullRefresh(pool, schemas, { redisKeyPrefix: `${schemas.meta}:` });
  }

  beforeAll(async () => {
    pool = createWarehousePool(stackEnv.warehouseUrl, 2);
  });
  afterAll(async () => {
    for (const s of made) await pool.query(`DROP SCHEMA IF EXISTS "${s.staging}" CASCADE; DROP SCHEMA IF EXISTS "${s.analytics}" CASCADE; DROP SCHEMA IF EXISTS "${s.meta}" CASCADE`);
    await pool.end();
  });

  for (const extras of [false, true]) {
    it(`gives the per-batch path's staging, history and derived tables${extras ? ' (with a truncate and unchanged TOASTed values mid-stream)' : ''}`, async () => {
      const input = streams(extras ? 99 : 98, extras);
      const replayed = await fresh('cl_rb');
      const live = await fresh('cl_live');
      await apply(replayed, input, true);
      // Nothing left in the log, and it was used: its state row counts what went through it.
      const log = await pool.query<{ n: string }>(`SELECT logged::text AS n FROM "${replayed.staging}"._log_state`);
      expect(log.rows[0]!.n).toBe('0');
      await apply(live, input, false);
      for (const t of STAGING) {
        const a = await rows(pool, replayed.staging, t);
        expect(a.length, t).toBeGreaterThan(5);
        expect(a, t).toEqual(await rows(pool, live.staging, t));
      }
      for (const t of DERIVED) expect(await rows(pool, replayed.analytics, t), t).toEqual(await rows(pool, live.analytics, t));
      const closed = await pool.query(`SELECT count(*)::int AS n FROM "${replayed.analytics}".dim_customers WHERE NOT is_current`);
      expect(closed.rows[0].n).toBeGreaterThan(5);
      if (extras) {
        const items = await pool.query(`SELECT count(*)::int AS n FROM "${replayed.staging}".stg_order_items`);
        expect(items.rows[0].n).toBeLessThan(input.get('order_items')!.length / 2);
      }
    });
  }
});
