import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import kafkajs from 'kafkajs';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createHarness, startInProcess, waitFor, type Harness } from '../../bench/capture/harness.ts';
import { groupLag, waitCaughtUp } from '../../src/consumer/lag.ts';
import { TABLES, TABLE_NAMES, type TableName } from '../../src/consumer/tables.ts';
import { DEFAULT_MIX, TrafficGenerator, type TrafficMix } from '../../src/generator/writer.ts';
import { Rng } from '../../src/generator/rng.ts';
import { diffDerivedTables } from '../../consumers/warehouse/batch-recompute.ts';
import { isoSql, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { diffRedisClv } from '../../src/sinks/redis/compare.ts';
import { sleep } from '../../src/util/sleep.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';
import { createTestWarehouse, dropTestWarehouse } from '../helpers/pipeline-cleanup.ts';

/**
 * Issue 6: the warehouse consumer *process* is SIGKILLed in the middle of a
 * stream of changes and restarted, several times, with the real pipeline:
 * the traffic generator writes into the source database, our capture
 * (in-process) streams its slot to Kafka, and consumers/warehouse/main.ts runs
 * as a child process. Afterwards staging equals the source row for row (every
 * column, timestamps to the microsecond), every derived table equals the
 * batch recomputation and Redis CLV equals Postgres: nothing lost, nothing
 * applied twice.
 *
 * TEST_SEED=<n> replays the generator's workload and the kill schedule.
 */
const SEED = Number(process.env.TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
const MAIN = fileURLToPath(new URL('../../consumers/warehouse/main.ts', import.meta.url));
// More deletes and dimension changes than the demo default, so every kind of change crosses the kills.
const MIX: TrafficMix = { ...DEFAULT_MIX, segmentChange: 0.2, emailChange: 0.1, priceChange: 0.1, newCustomer: 0.1, deleteOrder: 0.08 };

describe('source → capture → Kafka → warehouse consumer process, SIGKILLed mid-stream', () => {
  let h: Harness | undefined;
  let wh: pg.Pool | undefined;
  let schemas: WarehouseSchemas | undefined;
  let child: ChildProcess | undefined;
  const redis = new Redis(stackEnv.redisUrl, { maxRetriesPerRequest: 1 });
  const stops: Array<() => Promise<void>> = [];

  const exited = (c: ChildProcess) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r())));

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited(child);
    }
    for (const stop of stops.reverse()) await stop().catch(() => {});
    const slot = h?.id;
    await h?.cleanup();
    if (wh) {
      await dropTestWarehouse(wh, schemas, redis, slot);
      // pg_replication_slots is cluster-wide: a slot left behind would pin WAL of the shared stack.
      const left = slot ? (await wh.query('SELECT slot_name FROM pg_replication_slots WHERE slot_name = $1', [slot])).rowCount : 0;
      await wh.end();
      if (left) throw new Error(`replication slot ${slot} was not dropped`);
    }
    redis.disconnect();
  });

  it('ends with staging equal to the source, derived tables equal to the batch recomputation and Redis equal to Postgres', async () => {
    const t0 = Date.now();
    const rng = new Rng(SEED ^ 0x5eed);
    const ctx = `seed ${SEED}`;
    h = await createHarness(uniqueId('e2e_crash'));
    const s = h.id;
    const src = h.pool;
    const topics = TABLE_NAMES.map((t) => h!.topic(t));
    const tw = await createTestWarehouse(s);
    ({ schemas, pool: wh } = tw);
    const group = tw.group;
    const kafka = new kafkajs.Kafka({ clientId: 'e2e-crash', brokers: stackEnv.kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    stops.push(() => admin.disconnect());

    const childEnv = {
      ...process.env, ...tw.env, LOG_LEVEL: 'error', CONSUMER_HEALTH_PORT: '0',
      // Several transactions per fetched batch, so kills land between and inside them; the
      // shortest session the broker accepts, so a restarted member gets the partitions back fast.
      CONSUMER_MAX_MESSAGES_PER_TX: '200', CONSUMER_SESSION_TIMEOUT_MS: '6000',
    };
    const spawnConsumer = (): ChildProcess => spawn(process.execPath, ['--import', 'tsx', MAIN], { env: childEnv, stdio: ['ignore', 'ignore', 'inherit'] });
    const applied = async (): Promise<number> => {
      const { rows } = await wh!.query(`SELECT coalesce(sum(next_offset), 0)::text AS n FROM "${schemas!.meta}".consumer_offsets WHERE consumer_group = $1`, [group]);
      return Number(rows[0].n);
    };

    // Started first (it waits for the capture to create the topics), so its start-up overlaps the setup.
    child = spawnConsumer();

    // A catalog before the capture starts: it arrives as snapshot reads.
    const gen = new TrafficGenerator(src, { schema: s, seed: SEED });
    await gen.seedCatalog(150, 40);
    const capture = await startInProcess(h.config({ CAPTURE_SNAPSHOT: 'initial' }));
    stops.push(() => capture.stop());

    // The stream: orders (alone and several to a transaction) with status changes,
    // segment/email/price changes, new customers and order deletes (cascading to lines).
    let writing = true;
    let writeError: unknown;
    const writer = (async () => {
      try {
        while (writing) {
          const n = rng.chance(0.3) ? rng.int(2, 5) : 1;
          await gen.placeOrders(n, n);
          for (let i = 0; i < 1 + n; i++) await gen.sideEffects(MIX);
          await sleep(rng.int(5, 25));
        }
      } catch (err) {
        writeError = err;
      }
    })();
    await waitFor('capture topics', async () => {
      const existing = new Set(await admin.listTopics());
      return topics.every((t) => existing.has(t));
    }, 30_000);

    const kills = rng.int(3, 5);
    const atKill: Array<{ lag: number; applied: number; upMs: number }> = [];
    for (let k = 0; k < kills; k++) {
      // Kill only a consumer that is working: it applied something since it started, then a random moment later.
      const spawned = Date.now();
      const before = k === 0 ? 0 : await applied();
      await waitFor(`consumer progress before kill ${k + 1} (${ctx})`, async () => (await applied()) > before || child!.exitCode !== null, 45_000);
      const upMs = Date.now() - spawned;
      expect(child.exitCode, `consumer exited by itself before kill ${k + 1} (${ctx})`).toBeNull();
      await sleep(rng.int(0, 1000));
      child.kill('SIGKILL');
      await exited(child);
      expect(child.signalCode).toBe('SIGKILL');
      atKill.push({ lag: await groupLag(admin, wh, schemas, group, topics), applied: await applied(), upMs });
      // Changes keep coming while it is down; then the same consumer comes back.
      await sleep(rng.int(0, 300));
      child = spawnConsumer();
    }
    // Let the last incarnation take over mid-stream too, then stop the source traffic.
    const before = await applied();
    await waitFor(`consumer progress after the last restart (${ctx})`, async () => (await applied()) > before, 45_000);
    await sleep(1000);
    writing = false;
    await writer;
    expect(writeError, ctx).toBeUndefined();
    const tWrites = Date.now();

    // Source rows, every column of the source table, as text; timestamps as µs ISO.
    const sourceColumns = async (table: TableName): Promise<string[]> => {
      const { rows } = await src.query(`SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`, [s, table]);
      return rows.map((r) => r.column_name as string);
    };
    const render = (table: TableName, cols: string[]) =>
      cols.map((c) => (TABLES[table].columns[c] === 'timestamptz' ? `${isoSql(c)} AS ${c}` : `${c}::text AS ${c}`)).join(', ');
    const rowsOf = async (pool: pg.Pool, from: string, table: TableName, cols: string[]): Promise<string[]> => {
      const { rows } = await pool.query(`SELECT ${render(table, cols)} FROM ${from}`);
      return rows.map((r) => JSON.stringify(cols.map((c) => r[c] ?? null))).sort();
    };
    const compare = async () => {
      const out: Array<{ table: string; source: number; staging: number; onlySource: string[]; onlyStaging: string[] }> = [];
      for (const t of TABLE_NAMES) {
        const cols = await sourceColumns(t);
        const want = await rowsOf(src, `"${s}".${t}`, t, cols);
        const got = await rowsOf(wh!, `"${schemas!.staging}".stg_${t}`, t, cols);
        const wantSet = new Set(want);
        const gotSet = new Set(got);
        out.push({
          table: `stg_${t}`, source: want.length, staging: got.length,
          onlySource: want.filter((r) => !gotSet.has(r)).slice(0, 3),
          onlyStaging: got.filter((r) => !wantSet.has(r)).slice(0, 3),
        });
      }
      return out;
    };
    // The source is quiet now: wait for the capture and the consumer to drain
    // (cheap checks first: nothing pending in Kafka and equal row counts; then the full comparison).
    const counts = async (pool: pg.Pool, name: (t: TableName) => string) =>
      JSON.stringify((await pool.query(`SELECT ${TABLE_NAMES.map((t) => `(SELECT count(*) FROM ${name(t)})`).join(', ')}`)).rows[0]);
    await waitFor('consumer caught up with the source', async () => (await groupLag(admin, wh!, schemas!, group, topics)) === 0
      && (await counts(src, (t) => `"${s}".${t}`)) === (await counts(wh!, (t) => `"${schemas!.staging}".stg_${t}`)), 45_000).catch(() => undefined);
    await waitFor('staging equal to the source', async () => (await compare()).every((d) => d.source === d.staging && !d.onlySource.length && !d.onlyStaging.length), 10_000)
      .catch(() => undefined);
    await waitCaughtUp(admin, wh, schemas, group, topics, { timeoutMs: 15_000 }).catch(() => undefined);
    await waitFor('redis outbox flushed', async () => Number((await wh!.query(`SELECT count(*) n FROM "${schemas!.meta}".redis_outbox`)).rows[0].n) === 0, 15_000)
      .catch(() => undefined);
    const tDrained = Date.now();

    // Every column of the source table is compared (the consumer's table map covers them all).
    for (const t of TABLE_NAMES) expect((await sourceColumns(t)).sort(), `columns of ${t}`).toEqual(Object.keys(TABLES[t].columns).sort());
    for (const d of await compare()) {
      const got = { rows: d.staging, onlySource: d.onlySource, onlyStaging: d.onlyStaging };
      expect(got, `${d.table} vs source (${ctx})`).toEqual({ rows: d.source, onlySource: [], onlyStaging: [] });
    }
    // Microseconds made it through (now() in the source has them).
    const us = await wh.query(`SELECT count(*) FILTER (WHERE to_char(updated_at, 'US') <> '000000') AS n FROM "${schemas.staging}".stg_orders`);
    expect(Number(us.rows[0].n)).toBeGreaterThan(0);
    const client = await wh.connect();
    try {
      for (const d of await diffDerivedTables(client, schemas)) expect(d, `${d.table} (${ctx})`).toMatchObject({ missing: 0, unexpected: 0 });
    } finally {
      client.release();
    }
    expect(await diffRedisClv(wh, redis, schemas, `${s}:`), ctx).toEqual({ missing: [], stale: [], extra: [] });
    await waitCaughtUp(admin, wh, schemas, group, topics, { timeoutMs: 1000 });

    // The run was not vacuous: a real stream with updates and deletes, kills that left work pending.
    const derived = (await wh.query(`SELECT (SELECT count(*) FROM "${schemas.analytics}".fact_orders) AS facts,
      (SELECT count(*) FROM "${schemas.analytics}".customer_lifetime_value) AS clv,
      (SELECT count(*) FROM "${schemas.staging}".stg_tombstones) AS tombstones`)).rows[0];
    const summary = { seed: SEED, kills, atKill, stats: gen.stats, derived, ms: { writes: tWrites - t0, drain: tDrained - tWrites } };
    expect(gen.stats.orders, JSON.stringify(summary)).toBeGreaterThan(150);
    expect(gen.stats.statusChanges + gen.stats.segmentChanges, JSON.stringify(summary)).toBeGreaterThan(50);
    expect(gen.stats.deletes, JSON.stringify(summary)).toBeGreaterThan(5);
    expect(Number(derived.tombstones), JSON.stringify(summary)).toBeGreaterThan(5);
    expect(Number(derived.clv), JSON.stringify(summary)).toBeGreaterThan(50);
    expect(atKill.filter((a) => a.lag > 0).length, JSON.stringify(summary)).toBeGreaterThanOrEqual(Math.ceil(kills / 2));
    if (process.env.TEST_VERBOSE) console.log(JSON.stringify(summary));

    child.kill('SIGTERM');
    await exited(child);
  }, 150_000);
});
