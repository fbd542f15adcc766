import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { TABLE_NAMES, type TableName } from '../../src/consumer/tables.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { applyBatch } from '../../consumers/warehouse/apply.ts';
import type { BatchMessage } from '../../src/sinks/postgres/batch-tx.ts';
import { diffDerivedTables } from '../../consumers/warehouse/batch-recompute.ts';
import { createWarehousePool, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { fixtureChange, rng, ShopSim } from '../helpers/debezium-fixtures.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * The per-batch CLV is a delta (consumers/warehouse/recompute-clv.ts): an
 * error would persist and add up, and a final comparison could miss one a
 * later exact recomputation of that customer happened to repair. So here
 * customer_lifetime_value (and fact_orders, which it is a delta of) must
 * equal the batch recomputation after EVERY batch, through cancellations
 * and returns of a customer's first and last orders, deleted lines and
 * orders, orders moved between customers, late segment changes, duplicate
 * deliveries and re-applied ranges.
 */

describe('warehouse CLV delta', () => {
  const id = uniqueId('wh_clvd');
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

  it('equals the exact recomputation after every batch', async () => {
    const sim = new ShopSim(4242);
    sim.randomWorkload(250);
    // Cancel or return the first and the last order of customers, and move orders between customers.
    const byCustomer = new Map<string, { id: string; date: string }[]>();
    for (const [oid, o] of sim.rows.orders) byCustomer.set(String(o.customer_id), [...(byCustomer.get(String(o.customer_id)) ?? []), { id: oid, date: String(o.order_date) }]);
    const customers = [...byCustomer.keys()];
    let edits = 0;
    for (const [, list] of byCustomer) {
      if (list.length < 2) continue;
      list.sort((a, b) => a.date.localeCompare(b.date));
      sim.transaction(() => sim.setStatus(list[0]!.id, 'cancelled'));
      sim.transaction(() => sim.setStatus(list[list.length - 1]!.id, 'returned'));
      sim.transaction(() => sim.moveOrder(list[1]!.id, sim.pick(customers)));
      sim.transaction(() => sim.setStatus(list[0]!.id, 'placed'));
      edits++;
    }
    expect(edits).toBeGreaterThan(3);
    sim.randomWorkload(150);

    const rand = rng(99);
    const streams = new Map<TableName, BatchMessage[]>();
    for (const ev of sim.events) {
      const s = streams.get(ev.table) ?? [];
      const ch = fixtureChange(ev);
      s.push({ offset: String(s.length), change: ch });
      if (rand() < 0.05) s.push({ offset: String(s.length + 1), change: ch });
      streams.set(ev.table, s);
    }
    const checked = new Set(['customer_lifetime_value', 'fact_orders']);
    const client = await pool.connect();
    try {
      await client.query('SET enable_nestloop = off');
      const pos = new Map<TableName, number>(TABLE_NAMES.map((t) => [t, 0]));
      let batches = 0;
      let clvRows = 0;
      for (;;) {
        const open = TABLE_NAMES.filter((t) => pos.get(t)! < (streams.get(t)?.length ?? 0));
        if (open.length === 0) break;
        const table = open[Math.floor(rand() * open.length)]!;
        const start = pos.get(table)!;
        const end = Math.min(start + 1 + Math.floor(rand() * 20), streams.get(table)!.length);
        const from = rand() < 0.1 ? Math.max(0, start - 10) : start; // a range applied again
        await applyBatch(pool, schemas, { group: 'g', topic: table, partition: 0, messages: streams.get(table)!.slice(from, end), deadLetters: [] }, { redisKeyPrefix: `${id}:` });
        pos.set(table, end);
        batches++;
        for (const d of await diffDerivedTables(client, schemas)) {
          if (checked.has(d.table)) expect(d, `${d.table} after batch ${batches} (${table} ${from}..${end})`).toMatchObject({ missing: 0, unexpected: 0 });
        }
        clvRows = Math.max(clvRows, Number((await client.query(`SELECT count(*) n FROM "${schemas.analytics}".customer_lifetime_value`)).rows[0].n));
      }
      // Guard against a vacuous pass: many batches, and customers with figures.
      expect(batches).toBeGreaterThan(60);
      expect(clvRows).toBeGreaterThan(5);
    } finally {
      client.release();
    }
  });
});
