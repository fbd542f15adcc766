import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RowChange } from '../../src/consumer/envelope.ts';
import type { Row, TableName } from '../../src/consumer/tables.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { runVerify } from '../../src/rebuild/verify.ts';
import { applyBatches } from '../../consumers/warehouse/apply.ts';
import { readStoredOffsets, type BatchMessage } from '../../src/sinks/postgres/batch-tx.ts';
import { createWarehousePool, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * Every effect of a batch is idempotent: re-applying all changes since a
 * point (what a rewind does) leaves staging, history, SCD2, fact_orders,
 * CLV, mart_sales and order_fulfillment exactly as they were, including an
 * update whose unchanged TOASTed email was filled from staging the first time,
 * and including a batch fetched before a rewind that commits after it.
 */
const id = uniqueId('rwi').slice(0, 20);
const schemas: WarehouseSchemas = { staging: `${id}_stg`, analytics: `${id}_an`, meta: `${id}_meta` };
const group = `${id}_g`;
let pool: pg.Pool;

let lsn = 1000n;
let clock = 1_714_557_600_000_000n; // 2024-05-01T10:00:00Z
const iso = (us: bigint) => `${new Date(Number(us / 1000n)).toISOString().slice(0, 19)}.${(us % 1_000_000n).toString().padStart(6, '0')}Z`;

function change(table: TableName, op: 'c' | 'u' | 'd', before: Row | null, after: Row | null, unavailable: string[] = []): RowChange {
  lsn += 10n;
  clock += 3_600_000_000n;
  return { table, op, before, after, lsn, seq: lsn - 5n, commitUs: clock, txId: null, unavailable };
}

const topicOf = (t: TableName) => `${id}.public.${t}`;

async function apply(changes: RowChange[], offsets: Map<TableName, number>): Promise<void> {
  const byTopic = new Map<TableName, BatchMessage[]>();
  for (const ch of changes) {
    const off = offsets.get(ch.table) ?? 0;
    offsets.set(ch.table, off + 1);
    byTopic.set(ch.table, [...(byTopic.get(ch.table) ?? []), { offset: String(off), change: ch }]);
  }
  await applyBatches(pool, schemas, group, [...byTopic].map(([t, messages]) => ({ topic: topicOf(t), partition: 0, messages, deadLetters: [] })), { redisKeyPrefix: `${id}:` });
}

async function tables(): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const schema of [schemas.staging, schemas.analytics]) {
    const { rows } = await pool.query(`SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE'`, [schema]);
    for (const { table_name: t } of rows) {
      const cols = (await pool.query(`SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 AND column_name <> '_ingested_at' ORDER BY ordinal_position`, [schema, t])).rows.map((r) => `"${r.column_name}"`);
      out[`${schema}.${t}`] = (await pool.query(`SELECT ${cols.join(', ')} FROM "${schema}"."${t}"`)).rows.map((r) => JSON.stringify(r)).sort();
    }
  }
  return out;
}

beforeAll(async () => {
  pool = createWarehousePool(stackEnv.warehouseUrl, 4);
  await migrate(pool, 'warehouse', { schemas: warehouseSchemaNames(schemas) });
});

afterAll(async () => {
  for (const s of [schemas.staging, schemas.analytics, schemas.meta]) await pool.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
  await pool.end();
});

describe('re-applying changes (a rewind) changes nothing', () => {
  it('every table identical after re-applying everything, in other batch cuts, and a stale batch cannot store its offset over a rewind', async () => {
    const cust = (cid: string, email: string, seg: string, upd: bigint): Row => ({
      customer_id: cid, email, first_name: 'Ann', last_name: `L${cid}`, customer_segment: seg, created_at: iso(1_700_000_000_000_000n), updated_at: iso(upd),
    });
    const prod = (pid: string, cat: string, price: string): Row => ({ product_id: pid, product_name: `P${pid}`, category: cat, price, rating: '4.5', updated_at: iso(clock) });
    const order = (oid: string, cid: string, status: string): Row => ({ order_id: oid, customer_id: cid, order_date: iso(1_714_560_000_000_000n + BigInt(oid) * 1000n), status, updated_at: iso(clock) });
    const item = (oid: string, pid: string, q: string): Row => ({ order_id: oid, product_id: pid, quantity: q, unit_price: '10.00', discount: '0.10' });

    const all: RowChange[] = [];
    const c1 = cust('1', 'a@x.io', 'bronze', clock);
    all.push(change('customers', 'c', null, c1));
    all.push(change('customers', 'c', null, cust('2', 'b@x.io', 'silver', clock)));
    all.push(change('products', 'c', null, prod('10', 'books', '10.00')));
    all.push(change('products', 'c', null, prod('11', 'games', '30.00')));
    all.push(change('orders', 'c', null, order('100', '1', 'placed')), change('order_items', 'c', null, item('100', '10', '2')), change('order_items', 'c', null, item('100', '11', '1')));
    all.push(change('orders', 'c', null, order('101', '2', 'placed')), change('order_items', 'c', null, item('101', '10', '5')));
    // A segment change whose email is an unchanged TOASTed value: filled from staging ('a@x.io').
    const seg = { ...cust('1', '', 'gold', clock + 3_600_000_000n), email: null };
    all.push(change('customers', 'u', null, seg, ['email']));
    all.push(change('orders', 'u', order('100', '1', 'placed'), order('100', '1', 'shipped')));
    all.push(change('customers', 'u', null, cust('1', 'new@x.io', 'gold', clock + 3_600_000_000n)));
    all.push(change('products', 'u', prod('11', 'games', '30.00'), prod('11', 'books', '31.00'))); // moves its lines between mart cells
    all.push(change('orders', 'u', order('100', '1', 'shipped'), order('100', '1', 'delivered')));
    all.push(change('orders', 'u', order('101', '2', 'placed'), order('101', '2', 'cancelled')));
    all.push(change('order_items', 'd', item('101', '10', '5'), null));
    all.push(change('customers', 'd', cust('2', 'b@x.io', 'silver', clock), null));
    all.push(change('orders', 'c', null, order('102', '1', 'placed')), change('order_items', 'c', null, item('102', '11', '3')));

    // First pass: in small batches (3 changes a transaction).
    const offsets = new Map<TableName, number>();
    for (let i = 0; i < all.length; i += 3) await apply(all.slice(i, i + 3), offsets);
    const before = await tables();
    const hist = await pool.query(`SELECT lsn::text, email_normalized, customer_segment FROM "${schemas.staging}".customer_changes WHERE customer_id = 1 ORDER BY lsn`);
    expect(hist.rows.map((r) => r.email_normalized)).toEqual(['a@x.io', 'a@x.io', 'new@x.io']);
    expect(before[`${schemas.analytics}.mart_sales`]!.length).toBeGreaterThan(0);
    expect(before[`${schemas.analytics}.order_fulfillment`]!.length).toBe(3);

    // Rewind to the start: offsets back to 0, and everything re-applied in one other cut (7 a transaction).
    await pool.query(`UPDATE "${schemas.meta}".consumer_offsets SET next_offset = 0, rewind_pending = true WHERE consumer_group = $1`, [group]);
    const again = new Map<TableName, number>();
    for (let i = 0; i < all.length; i += 7) await apply(all.slice(i, i + 7), again);
    expect(await tables()).toEqual(before);
    const pending = await pool.query(`SELECT count(*)::int n FROM "${schemas.meta}".consumer_offsets WHERE consumer_group = $1 AND rewind_pending`, [group]);
    expect(pending.rows[0].n).toBe(0);

    // A rewind half-way, then a batch fetched before it (past the rewound offset) commits: its offset is not stored, the re-applied range is.
    const stored = await readStoredOffsets(pool, schemas, group);
    const ordersTopic = topicOf('orders');
    await pool.query(`UPDATE "${schemas.meta}".consumer_offsets SET next_offset = 2, rewind_pending = true WHERE consumer_group = $1 AND topic = $2`, [group, ordersTopic]);
    const ordersChanges = all.filter((c) => c.table === 'orders');
    await applyBatches(pool, schemas, group, [{ topic: ordersTopic, partition: 0, messages: ordersChanges.slice(4).map((c, i) => ({ offset: String(4 + i), change: c })), deadLetters: [] }], { redisKeyPrefix: `${id}:` });
    expect((await readStoredOffsets(pool, schemas, group)).get(`${ordersTopic}/0`)).toBe('2');
    await applyBatches(pool, schemas, group, [{ topic: ordersTopic, partition: 0, messages: ordersChanges.slice(2).map((c, i) => ({ offset: String(2 + i), change: c })), deadLetters: [] }], { redisKeyPrefix: `${id}:` });
    expect(await readStoredOffsets(pool, schemas, group)).toEqual(stored);
    expect(await tables()).toEqual(before);

    const client = await pool.connect();
    try {
      const r = await runVerify(client, schemas);
      expect(r.recompute.filter((d) => d.missing + d.unexpected > 0)).toEqual([]);
      expect(r.checks.filter((c) => c.failures > 0)).toEqual([]);
    } finally {
      client.release();
    }
  });
});
