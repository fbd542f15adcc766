import type { ChildProcess } from 'node:child_process';
import kafkajs from 'kafkajs';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { consumeUntil, createHarness, spawnCapture, startInProcess, waitFor, type Harness } from '../../bench/capture/harness.ts';
import { createRegistry } from '../../src/consumer/avro.ts';
import { waitCaughtUp } from '../../src/consumer/lag.ts';
import { TABLES, TABLE_NAMES, type TableName } from '../../src/consumer/tables.ts';
import { WarehouseConsumer } from '../../consumers/warehouse/consumer.ts';
import { createLogger } from '../../src/logger.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { diffDerivedTables } from '../../consumers/warehouse/batch-recompute.ts';
import { createWarehousePool, isoSql, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { stagingRows } from '../../consumers/warehouse/staging-apply.ts';
import { sleep } from '../../src/util/sleep.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * Issue 17: an on-demand re-snapshot (incremental, by chunks between WAL
 * watermarks) never loses, reorders or resurrects a change made while it
 * runs, and survives a SIGKILL of the capture in the middle. Real pipeline:
 * source → our capture → Kafka → the warehouse consumer → staging, which must
 * end equal to the source, column for column.
 */
interface Pipeline {
  h: Harness;
  wh: pg.Pool;
  schemas: WarehouseSchemas;
  topics: string[];
  admin: kafkajs.Admin;
}

const redis = new Redis(stackEnv.redisUrl, { maxRetriesPerRequest: 1 });
let stops: Array<() => Promise<void>> = [];
let child: ChildProcess | null = null;

const exited = (c: ChildProcess) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r())));

afterEach(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await exited(child);
  }
  child = null;
  for (const stop of stops.reverse()) await stop().catch(() => {});
  stops = [];
});

async function pipeline(prefix: string, seedSource: (h: Harness) => Promise<void>): Promise<Pipeline> {
  const h = await createHarness(uniqueId(prefix));
  const s = h.id;
  const schemas = { staging: `${s}_stg`, analytics: `${s}_an`, meta: `${s}_wmeta` };
  const wh = createWarehousePool(stackEnv.warehouseUrl, 4);
  stops.push(async () => {
    const slot = h.id;
    await h.cleanup();
    await wh.query(`DROP SCHEMA IF EXISTS "${schemas.staging}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.analytics}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.meta}" CASCADE`);
    const left = (await wh.query('SELECT slot_name FROM pg_replication_slots WHERE slot_name = $1', [slot])).rowCount;
    await wh.end();
    const keys = await redis.keys(`${s}:*`);
    if (keys.length) await redis.del(...keys);
    if (left) throw new Error(`replication slot ${slot} was not dropped`);
  });
  await seedSource(h);
  await migrate(wh, 'warehouse', { schemas: warehouseSchemaNames(schemas) });
  const topics = TABLE_NAMES.map((t) => h.topic(t));
  const kafka = new kafkajs.Kafka({ clientId: 'resnap', brokers: stackEnv.kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  stops.push(() => admin.disconnect());
  const consumer = new WarehouseConsumer({
    kafka, registry: createRegistry(stackEnv.registryUrl), pool: wh, redis, schemas, group: `${s}_wh`,
    topics, redisKeyPrefix: `${s}:`, log: createLogger('resnap', 'warn'),
  });
  const ac = new AbortController();
  void consumer.start(ac.signal).catch(() => {});
  stops.push(async () => { ac.abort(); await consumer.stop(); });
  return { h, wh, schemas, topics, admin };
}

async function sourceRows(p: Pipeline, table: TableName): Promise<string[]> {
  const cols = Object.entries(TABLES[table].columns).map(([c, k]) => (k === 'timestamptz' ? `${isoSql(c)} AS ${c}` : `${c}::text AS ${c}`));
  const { rows } = await p.h.pool.query(`SELECT ${cols.join(', ')} FROM ${p.h.id}.${table}`);
  return rows.map((r) => JSON.stringify(Object.keys(TABLES[table].columns).map((c) => r[c] ?? null))).sort();
}

async function stagingText(p: Pipeline, table: TableName): Promise<string[]> {
  const client = await p.wh.connect();
  try {
    return (await stagingRows(client, p.schemas, table)).map((r) => JSON.stringify(Object.keys(TABLES[table].columns).map((c) => r[c] ?? null))).sort();
  } finally {
    client.release();
  }
}

/** Rows in staging but not in the source (resurrected) and the other way round (lost). */
async function diff(p: Pipeline, table: TableName): Promise<{ extra: string[]; missing: string[] }> {
  const src = new Set(await sourceRows(p, table));
  const stg = new Set(await stagingText(p, table));
  return { extra: [...stg].filter((r) => !src.has(r)).slice(0, 5), missing: [...src].filter((r) => !stg.has(r)).slice(0, 5) };
}

async function snapshotsPending(p: Pipeline): Promise<number> {
  const { rows } = await p.h.pool.query(`SELECT count(*)::int AS n FROM ${p.h.id}_meta.capture_incremental_snapshots`).catch(() => ({ rows: [{ n: -1 }] }));
  return rows[0].n as number;
}

async function settle(p: Pipeline, tables: TableName[]): Promise<void> {
  await waitFor('re-snapshot finished', async () => ((await snapshotsPending(p)) === 0 ? true : null), 180_000);
  await waitFor('staging equals source', async () => {
    for (const t of tables) {
      const d = await diff(p, t);
      if (d.extra.length || d.missing.length) return null;
    }
    return true;
  }, 90_000).catch(() => undefined);
  await waitCaughtUp(p.admin, p.wh, p.schemas, `${p.h.id}_wh`, p.topics, { timeoutMs: 60_000 });
}

const signal = (p: Pipeline, table: string) => p.h.pool.query("SELECT pg_logical_emit_message(true, 'shopstream.snapshot', $1)", [`${p.h.id}.${table}`]);

describe('capture: incremental re-snapshot, end to end', () => {
  it('an update in a transaction open across the whole re-snapshot wins over the row read before it committed', async () => {
    const p = await pipeline('resnap_open', async (h) => {
      await h.pool.query(`INSERT INTO ${h.id}.products (product_id, product_name, category, price, rating)
        SELECT g, 'p' || g, 'home', round(g * 2.98 + 0.01, 2), 4.0 FROM generate_series(1, 40) g`);
    });
    const s = p.h.id;
    const cap = await startInProcess(p.h.config({ CAPTURE_SNAPSHOT: 'initial', CAPTURE_SNAPSHOT_CHUNK_SIZE: '16' }));
    stops.push(() => cap.stop());
    await settle(p, ['products']);
    const before = (await p.h.pool.query(`SELECT price::text FROM ${s}.products WHERE product_id = 8`)).rows[0].price as string;

    // The reproduction: the update's own LSN is early, its commit comes after the signal and every chunk.
    const tx = new pg.Client({ connectionString: p.h.config().sourceUrl });
    await tx.connect();
    let committed = false;
    const open = tx.query(`BEGIN; UPDATE ${s}.products SET price = 999.00 WHERE product_id = 8; SELECT pg_sleep(6); COMMIT;`).then((r) => { committed = true; return r; });
    await sleep(1500);
    await signal(p, 'products');
    await waitFor('re-snapshot finished before the commit', async () => ((await snapshotsPending(p)) === 0 ? true : null), 30_000);
    // The whole re-snapshot (40 rows in chunks of 16: three windows) ran while the update was uncommitted.
    expect(committed).toBe(false);
    await open;
    await tx.end();
    await settle(p, ['products']);
    expect(await diff(p, 'products')).toEqual({ extra: [], missing: [] });
    const stg = await p.wh.query(`SELECT price::text, _source_seq::text, _source_lsn::text FROM "${p.schemas.staging}".stg_products WHERE product_id = 8`);
    expect(stg.rows[0].price).toBe('999.00');

    // The topic holds the situation of the issue: the r row with the old price, then the u with a lower LSN.
    const msgs = await consumeUntil([p.h.topic('products')], (all) => all.some((m) => m.value?.op === 'u'), 30_000);
    const of8 = msgs.filter((m) => m.key?.product_id === 8n && m.value);
    const r = [...of8].reverse().find((m) => m.value.op === 'r' && m.value.source.snapshot === 'incremental')!;
    const u = of8.find((m) => m.value.op === 'u')!;
    expect(Number(r.offset)).toBeLessThan(Number(u.offset));
    expect(u.value.source.lsn).toBeLessThan(r.value.source.lsn);
    const [rSeq] = JSON.parse(r.value.source.sequence).map(BigInt);
    const [uSeq] = JSON.parse(u.value.source.sequence).map(BigInt);
    expect(uSeq).toBeGreaterThan(rSeq); // commit order, which the consumer uses
    expect(before).not.toBe('999.00');
  });

  it('a table read in 10 chunks while updates, a delete and an insert land inside the windows: staging equals the source, nothing resurrected', async () => {
    const N = 5000;
    // Rows exist before the slot (CAPTURE_SNAPSHOT=never): staging learns them only from the re-snapshot.
    const p = await pipeline('resnap_chunks', async (h) => {
      await h.pool.query(`INSERT INTO ${h.id}.customers (customer_id, email, first_name, last_name, customer_segment)
        SELECT g, 'c' || g || '@x.io', 'F' || g, 'L', 'bronze' FROM generate_series(1, ${N}) g`);
    });
    const s = p.h.id;
    const cap = await startInProcess(p.h.config({ CAPTURE_SNAPSHOT: 'never', CAPTURE_SNAPSHOT_CHUNK_SIZE: '500' }));
    stops.push(() => cap.stop());
    await waitFor('capture streaming', async () => {
      await p.h.pool.query(`UPDATE ${s}.customers SET last_name = 'probe' WHERE customer_id = 1`);
      const o = await p.admin.fetchTopicOffsets(p.h.topic('customers')).catch(() => null);
      return o && Number(o[0]!.high) > 0 ? true : null;
    }, 60_000);

    // Holds the re-snapshot between its chunks, so the changes below land inside it for certain (unheld, the 10
    // chunks can all be done within one poll): the capture's progress update of the first chunk waits on an
    // advisory lock the test holds. The capture code is unchanged; it reads one chunk ahead, then waits.
    const HOLD = 1717;
    await p.h.pool.query(`CREATE FUNCTION ${s}_meta.test_hold() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_advisory_xact_lock(${HOLD}); RETURN NEW; END $$`);
    await p.h.pool.query(`CREATE TRIGGER test_hold BEFORE UPDATE ON ${s}_meta.capture_incremental_snapshots FOR EACH ROW EXECUTE FUNCTION ${s}_meta.test_hold()`);
    const holder = new pg.Client({ connectionString: p.h.config().sourceUrl });
    await holder.connect();
    await holder.query('SELECT pg_advisory_lock($1)', [HOLD]);
    let held = true;
    const release = async () => {
      if (!held) return;
      held = false;
      await holder.query('SELECT pg_advisory_unlock($1)', [HOLD]);
      await holder.end();
    };
    stops.push(release);

    let writing = true;
    let writes = 0;
    const segs = ['silver', 'gold', 'platinum', 'bronze'];
    const writer = (async () => {
      let i = 0;
      while (writing) {
        i += 1;
        // spread over the whole key range, so every chunk's window sees some
        const id = 1 + ((i * 7919) % N);
        await p.h.pool.query(`UPDATE ${s}.customers SET customer_segment = $1, updated_at = now() WHERE customer_id = $2`, [segs[i % 4], id]);
        writes += 1;
        if (i % 25 === 0) await sleep(1);
      }
    })();
    stops.push(async () => { writing = false; await writer.catch(() => {}); });
    const open = new pg.Client({ connectionString: p.h.config().sourceUrl });
    await open.connect();
    await open.query('BEGIN');
    await open.query(`UPDATE ${s}.customers SET first_name = 'long-tx' WHERE customer_id = 4321`);
    await signal(p, 'customers');
    await waitFor('the re-snapshot held after its first chunk', async () => (await p.h.pool.query(
      `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name = 'shopstream-capture-incremental' AND a.datname = current_database()`)).rows[0].n > 0, 60_000);
    const pending = (await p.h.pool.query(`SELECT rows_done FROM ${s}_meta.capture_incremental_snapshots`)).rows;
    expect(pending).toEqual([{ rows_done: '0' }]);
    // inside the snapshot: a delete of a key read already (chunk 1), a delete of one not read yet, an insert beyond the end
    await p.h.pool.query(`DELETE FROM ${s}.customers WHERE customer_id IN (4990, 3)`);
    await p.h.pool.query(`INSERT INTO ${s}.customers (customer_id, email, first_name, last_name, customer_segment) VALUES (${N + 1}, 'new@x.io', 'N', 'W', 'gold')`);
    await open.query('COMMIT');
    await open.end();
    // Key 3's chunk was read and published before its delete: it is in the topic as a read.
    const early = await consumeUntil([p.h.topic('customers')], (all) => all.some((m) => m.value?.op === 'r' && m.key?.customer_id === 3n), 30_000);
    expect(early.some((m) => m.value?.op === 'r' && m.key?.customer_id === 3n)).toBe(true);
    expect(early.some((m) => m.value?.op === 'r' && m.key?.customer_id === 4990n)).toBe(false);
    await release();
    await waitFor('re-snapshot finished', async () => ((await snapshotsPending(p)) === 0 ? true : null), 120_000);
    writing = false;
    await writer;
    await settle(p, ['customers']);
    expect(writes).toBeGreaterThan(0);
    expect(await diff(p, 'customers')).toEqual({ extra: [], missing: [] });
    const gone = await p.wh.query(`SELECT customer_id FROM "${p.schemas.staging}".stg_customers WHERE customer_id IN (3, 4990)`);
    expect(gone.rows).toEqual([]);
    expect((await stagingText(p, 'customers')).length).toBe(N - 2 + 1);
    const client = await p.wh.connect();
    try {
      for (const d of await diffDerivedTables(client, p.schemas)) expect(d, d.table).toMatchObject({ missing: 0, unexpected: 0 });
    } finally {
      client.release();
    }
    // every chunk's rows came out as incremental reads, each key at most once
    const msgs = await consumeUntil([p.h.topic('customers')], (all) => all.filter((m) => m.value?.op === 'r').length >= N - 100, 60_000);
    const reads = msgs.filter((m) => m.value?.op === 'r');
    expect(new Set(reads.map((m) => String(m.key.customer_id))).size).toBe(reads.length);
    expect(reads.every((m) => m.value.source.snapshot === 'incremental')).toBe(true);
  }, 240_000);

  it('a capture SIGKILLed in the middle of a chunked re-snapshot resumes from its last chunk with nothing lost', async () => {
    const ORDERS = 3000;
    const LINES = 6; // 18,000 order lines, composite key (order_id, product_id)
    const p = await pipeline('resnap_kill', async (h) => {
      const s = h.id;
      await h.pool.query(`INSERT INTO ${s}.customers (customer_id, email, first_name, last_name, customer_segment) SELECT g, 'c' || g || '@x', 'F', 'L', 'gold' FROM generate_series(1, 50) g`);
      await h.pool.query(`INSERT INTO ${s}.products (product_id, product_name, category, price, rating) SELECT g, 'p' || g, 'home', g + 0.25, 3.5 FROM generate_series(1, ${LINES + 2}) g`);
      await h.pool.query(`INSERT INTO ${s}.orders (order_id, customer_id, order_date, status) SELECT g, 1 + g % 50, now(), 'placed' FROM generate_series(1, ${ORDERS}) g`);
      await h.pool.query(`INSERT INTO ${s}.order_items (order_id, product_id, quantity, unit_price, discount)
        SELECT o, pr, 1, pr + 0.25, 0 FROM generate_series(1, ${ORDERS}) o, generate_series(1, ${LINES}) pr`);
    });
    const s = p.h.id;
    const total = ORDERS * LINES;
    const env = { ...p.h.env, CAPTURE_SNAPSHOT: 'initial', CAPTURE_SNAPSHOT_CHUNK_SIZE: '300', LOG_LEVEL: 'warn' };
    child = spawnCapture(env);
    await settle(p, ['order_items']);

    await signal(p, 'order_items');
    const progress = async () => {
      const { rows } = await p.h.pool.query(`SELECT rows_done FROM ${s}_meta.capture_incremental_snapshots WHERE table_name = $1`, [`${s}.order_items`]);
      return rows[0] ? Number(rows[0].rows_done) : null;
    };
    // changes while it runs, before and after the kill
    const touch = async (round: number) => {
      await p.h.pool.query(`UPDATE ${s}.order_items SET quantity = quantity + 1 WHERE (order_id * 31 + $1) % 97 = 0`, [round]);
      await p.h.pool.query(`UPDATE ${s}.order_items SET discount = 0.10 WHERE order_id = $1`, [1 + ((round * 613) % ORDERS)]);
    };
    let round = 0;
    await waitFor('a third of the table re-read', async () => {
      await touch(++round);
      const n = await progress();
      return n !== null && n >= total / 3 ? true : null;
    }, 120_000);
    const atKill = (await progress())!;
    child.kill('SIGKILL');
    await exited(child);
    expect(child.signalCode).toBe('SIGKILL');
    // Read after the process is dead: the request is still pending, part done, so the kill hit the middle of the re-snapshot.
    const afterKill = await progress();
    expect(afterKill).not.toBeNull();
    expect(afterKill!).toBeGreaterThanOrEqual(atKill);
    expect(afterKill!).toBeLessThan(total);
    // while it is down: a deleted order (its lines go too), a new one, more updates
    await p.h.pool.query(`DELETE FROM ${s}.orders WHERE order_id = ${ORDERS - 5}`);
    await p.h.pool.query(`DELETE FROM ${s}.orders WHERE order_id = 7`);
    await p.h.pool.query(`INSERT INTO ${s}.orders (order_id, customer_id, order_date, status) VALUES (${ORDERS + 1}, 2, now(), 'placed')`);
    await p.h.pool.query(`INSERT INTO ${s}.order_items VALUES (${ORDERS + 1}, 1, 5, 1.25, 0), (${ORDERS + 1}, 2, 1, 2.25, 0)`);
    await touch(++round);

    child = spawnCapture(env);
    await waitFor('resumed past the kill point', async () => {
      await touch(++round);
      const n = await progress();
      return n === null || n > afterKill! ? true : null;
    }, 120_000);
    await settle(p, ['order_items', 'orders']);
    expect(await diff(p, 'order_items')).toEqual({ extra: [], missing: [] });
    expect(await diff(p, 'orders')).toEqual({ extra: [], missing: [] });

    // It resumed from its recorded key rather than starting over: fewer reads than two passes.
    const msgs = await consumeUntil([p.h.topic('order_items')], (all) => all.filter((m) => m.value?.source?.snapshot === 'incremental').length >= total - 400, 60_000);
    const reads = msgs.filter((m) => m.value?.source?.snapshot === 'incremental').length;
    expect(reads).toBeGreaterThanOrEqual(total - 400);
    expect(reads).toBeLessThan(total + afterKill!);
  }, 300_000);
});
