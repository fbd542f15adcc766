import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { TABLES, TABLE_NAMES, type TableName } from '../../src/consumer/tables.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { applyBatch } from '../../consumers/warehouse/apply.ts';
import type { BatchMessage } from '../../src/sinks/postgres/batch-tx.ts';
import { diffDerivedTables } from '../../consumers/warehouse/batch-recompute.ts';
import { createWarehousePool, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { stagingRows } from '../../consumers/warehouse/staging-apply.ts';
import { fullRefresh } from '../../consumers/warehouse/full-refresh.ts';
import { fixtureChange, rng, ShopSim } from '../helpers/debezium-fixtures.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * The Postgres half of the warehouse consumer without Kafka: Debezium
 * events (through Avro and validation) applied in per-table batches, in a
 * random interleaving across tables, with redeliveries; every derived table
 * must then equal its batch recomputation and staging must equal the
 * simulated source.
 */

function simRowsAsText(sim: ShopSim, table: TableName): string[] {
  return [...sim.rows[table].values()].map((r) => JSON.stringify(Object.keys(TABLES[table].columns).map((c) => (r[c] === null || r[c] === undefined ? null : String(r[c]))))).sort();
}

async function stagingAsText(client: pg.ClientBase, schemas: WarehouseSchemas, table: TableName): Promise<string[]> {
  const rows = await stagingRows(client, schemas, table);
  return rows.map((r) => JSON.stringify(Object.keys(TABLES[table].columns).map((c) => r[c] ?? null))).sort();
}

describe('warehouse recompute (Postgres only)', () => {
  const id = uniqueId('wh_rec');
  const schemas: WarehouseSchemas = { staging: `${id}_stg`, analytics: `${id}_an`, meta: `${id}_meta` };
  let pool: pg.Pool;

  beforeAll(async () => {
    pool = createWarehousePool(stackEnv.warehouseUrl);
    await migrate(pool, 'warehouse', { schemas: warehouseSchemaNames(schemas) });
  });
  afterAll(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS "${schemas.staging}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.analytics}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.meta}" CASCADE`);
    await pool.end();
  });

  it('ends equal to the batch recomputation after a shuffled, redelivered workload', async () => {
    const sim = new ShopSim(20240601);
    sim.randomWorkload(400);
    const rand = rng(7);
    // One "partition" per table; offsets are positions in it. Duplicates at
    // new offsets model a producer retry: only the LSN guard can catch them.
    const streams = new Map<TableName, BatchMessage[]>();
    for (const ev of sim.events) {
      const s = streams.get(ev.table) ?? [];
      const ch = fixtureChange(ev);
      s.push({ offset: String(s.length), change: ch });
      if (rand() < 0.05) s.push({ offset: String(s.length + 1), change: ch });
      streams.set(ev.table, s);
    }
    const pos = new Map<TableName, number>(TABLE_NAMES.map((t) => [t, 0]));
    let batches = 0;
    for (;;) {
      const open = TABLE_NAMES.filter((t) => pos.get(t)! < (streams.get(t)?.length ?? 0));
      if (open.length === 0) break;
      // Customers lag behind: late dimension changes.
      const table = open.includes('customers') && open.length > 1 && rand() < 0.7 ? open.filter((t) => t !== 'customers')[Math.floor(rand() * (open.length - 1))]! : open[Math.floor(rand() * open.length)]!;
      const start = pos.get(table)!;
      let end = Math.min(start + 1 + Math.floor(rand() * 25), streams.get(table)!.length);
      const replayFrom = rand() < 0.1 ? Math.max(0, start - 10) : start; // redelivery of already applied offsets
      await applyBatch(pool, schemas, { group: 'g', topic: table, partition: 0, messages: streams.get(table)!.slice(replayFrom, end), deadLetters: [] }, { redisKeyPrefix: `${id}:` });
      pos.set(table, end);
      batches++;
    }
    expect(batches).toBeGreaterThan(40);

    const client = await pool.connect();
    try {
      for (const t of TABLE_NAMES) expect(await stagingAsText(client, schemas, t), `stg_${t}`).toEqual(simRowsAsText(sim, t));
      const diffs = await diffDerivedTables(client, schemas);
      for (const d of diffs) expect(d, d.table).toMatchObject({ missing: 0, unexpected: 0 });
      const counts = await client.query<{ f: string; d: string; c: string; m: string; o: string; dd: string }>(`SELECT
        (SELECT count(*) FROM "${schemas.analytics}".fact_orders) f, (SELECT count(*) FROM "${schemas.analytics}".dim_customers) d,
        (SELECT count(*) FROM "${schemas.analytics}".customer_lifetime_value) c, (SELECT count(*) FROM "${schemas.analytics}".mart_sales) m,
        (SELECT count(*) FROM "${schemas.analytics}".order_fulfillment) o, (SELECT max(date_key) FROM "${schemas.analytics}".dim_date) dd`);
      const c = counts.rows[0]!;
      // Guard against a vacuous pass: the workload must have filled the tables.
      expect(Number(c.f)).toBeGreaterThan(100);
      expect(Number(c.d)).toBeGreaterThan(Number((await client.query(`SELECT count(*) n FROM "${schemas.staging}".stg_customers`)).rows[0].n));
      expect(Number(c.c)).toBeGreaterThan(5);
      expect(Number(c.m)).toBeGreaterThan(10);
      expect(Number(c.o)).toBeGreaterThan(10);
      const emails = await client.query(`SELECT count(*) n FROM "${schemas.staging}".stg_customers WHERE email_normalized <> lower(btrim(email)) OR full_name <> first_name || ' ' || last_name`);
      expect(emails.rows[0].n).toBe('0');
      const outbox = await client.query(`SELECT count(*) n FROM "${schemas.meta}".redis_outbox`);
      expect(Number(outbox.rows[0].n)).toBeGreaterThan(0);
      const far = sim.events.some((e) => e.table === 'orders' && String(e.after?.order_date ?? '').startsWith('2035'));
      if (far) expect(Number(c.dd)).toBeGreaterThanOrEqual(20350601);
    } finally {
      client.release();
    }
  });

  it('a deferred replay (staging only) followed by one full refresh gives the same derived tables', async () => {
    const rid = uniqueId('wh_full');
    const fresh: WarehouseSchemas = { staging: `${rid}_stg`, analytics: `${rid}_an`, meta: `${rid}_meta` };
    await migrate(pool, 'warehouse', { schemas: warehouseSchemaNames(fresh) });
    try {
      const sim = new ShopSim(777);
      sim.randomWorkload(400);
      const streams = new Map<TableName, BatchMessage[]>();
      for (const ev of sim.events) {
        const st = streams.get(ev.table) ?? [];
        st.push({ offset: String(st.length), change: fixtureChange(ev) });
        streams.set(ev.table, st);
      }
      for (const [table, msgs] of streams) {
        for (let i = 0; i < msgs.length; i += 200) {
          await applyBatch(pool, fresh, { group: 'g', topic: table, partition: 0, messages: msgs.slice(i, i + 200), deadLetters: [] }, { redisKeyPrefix: `${rid}:`, deferDerived: true });
        }
      }
      expect((await pool.query(`SELECT count(*) n FROM "${fresh.analytics}".fact_orders`)).rows[0].n).toBe('0');
      const res = await fullRefresh(pool, fresh, { redisKeyPrefix: `${rid}:` });
      expect(res.factOrders).toBeGreaterThan(100);
      const client = await pool.connect();
      try {
        for (const t of TABLE_NAMES) expect(await stagingAsText(client, fresh, t), `stg_${t}`).toEqual(simRowsAsText(sim, t));
        for (const d of await diffDerivedTables(client, fresh)) expect(d, d.table).toMatchObject({ missing: 0, unexpected: 0 });
        const outbox = await client.query(`SELECT count(*) n FROM "${fresh.meta}".redis_outbox`);
        expect(Number(outbox.rows[0].n)).toBe(res.customers);
      } finally {
        client.release();
      }
    } finally {
      await pool.query(`DROP SCHEMA IF EXISTS "${fresh.staging}" CASCADE; DROP SCHEMA IF EXISTS "${fresh.analytics}" CASCADE; DROP SCHEMA IF EXISTS "${fresh.meta}" CASCADE`);
    }
  });
});
