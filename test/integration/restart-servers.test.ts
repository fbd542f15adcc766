import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import kafkajs from 'kafkajs';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyClickstream } from '../../consumers/clickstream/batch-recompute.ts';
import { createRegistry } from '../../src/consumer/avro.ts';
import { groupLag } from '../../src/consumer/lag.ts';
import { TABLES, TABLE_NAMES, type TableName } from '../../src/consumer/tables.ts';
import { DEFAULT_PLAN, planClickstream, produceClickstream, type PlannedSend } from '../../src/generator/clickstream.ts';
import { DEFAULT_MIX, TrafficGenerator } from '../../src/generator/writer.ts';
import { migrate } from '../../src/migrations/runner.ts';
import { diffDerivedTables } from '../../consumers/warehouse/batch-recompute.ts';
import { createWarehousePool, isoSql, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { diffRedisClv } from '../../src/sinks/redis/compare.ts';
import { sleep } from '../../src/util/sleep.ts';
import { freePort } from '../helpers/throwaway-kafka.ts';

/**
 * Issue 10, "always on": while the capture, the warehouse consumer and the
 * clickstream consumer run as processes under a steady load (shop writes
 * and clickstream events), the broker, Postgres and the schema registry are
 * each restarted. Afterwards every staging table equals the source row for
 * row, every derived table (warehouse and clickstream models) equals its
 * batch recomputation, Redis equals Postgres, and no process exited: each
 * one rode out the outages (runMain restarts its services in-process on a
 * retriable failure).
 *
 * The shared stack is never restarted: this file brings up a stack of its
 * own (scripts/stack.sh with STACK_STATE and STACK_*_PORT) and removes it.
 */
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const SEED = Number(process.env.TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));

describe('capture and consumer processes through broker, Postgres and registry restarts', () => {
  const state = mkdtempSync(join(tmpdir(), 'restart-stack-'));
  const stackEnv: Record<string, string> = { STACK_STATE: state };
  let env: NodeJS.ProcessEnv = {};
  let urls: { source: string; warehouse: string; kafka: string; registry: string; redis: string };
  const children: Array<{ name: string; child: ChildProcess; log: string }> = [];
  let up = false;

  const stack = (...args: string[]) => {
    const r = spawnSync('bash', [join(REPO, 'scripts/stack.sh'), ...args], { env: { ...process.env, ...stackEnv }, encoding: 'utf8', timeout: 300_000 });
    if (r.status !== 0) throw new Error(`stack.sh ${args.join(' ')} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  };
  const tail = (file: string) => readFileSync(file, 'utf8').split('\n').slice(-30).join('\n');

  beforeAll(async () => {
    const [pgPort, redisPort, kafkaPort, controllerPort, registryPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
    Object.assign(stackEnv, {
      STACK_PG_PORT: String(pgPort), STACK_REDIS_PORT: String(redisPort), STACK_KAFKA_PORT: String(kafkaPort),
      STACK_KAFKA_CONTROLLER_PORT: String(controllerPort), STACK_REGISTRY_PORT: String(registryPort),
    });
    stack('up');
    up = true;
    urls = {
      source: `postgres://postgres@127.0.0.1:${pgPort}/shop`, warehouse: `postgres://postgres@127.0.0.1:${pgPort}/warehouse`,
      kafka: `127.0.0.1:${kafkaPort}`, registry: `http://127.0.0.1:${registryPort}`, redis: `redis://127.0.0.1:${redisPort}`,
    };
    env = {
      ...process.env, SOURCE_DATABASE_URL: urls.source, WAREHOUSE_DATABASE_URL: urls.warehouse, KAFKA_BROKERS: urls.kafka,
      SCHEMA_REGISTRY_URL: urls.registry, REDIS_URL: urls.redis, CAPTURE_METRICS_PORT: '-1', CONSUMER_HEALTH_PORT: '0', CLICKSTREAM_HEALTH_PORT: '0', LOG_LEVEL: 'warn',
      CONSUMER_MAX_MESSAGES_PER_TX: '200',
    };
  }, 400_000);

  afterAll(async () => {
    for (const { child } of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (up) {
      try {
        stack('down');
      } catch (err) {
        console.error(err);
      }
    }
    let pgDir: string | undefined;
    try {
      pgDir = readlinkSync(join(state, 'pg'));
    } catch {
      // a directory, not a link
    }
    if (pgDir) rmSync(pgDir, { recursive: true, force: true });
    rmSync(state, { recursive: true, force: true });
  }, 200_000);

  it('ends with every table equal to its recomputation and every process alive', async () => {
    const ctx = `seed ${SEED}`;
    const src = new pg.Pool({ connectionString: urls.source, max: 3 });
    src.on('error', () => {});
    const wh = createWarehousePool(urls.warehouse, 3);
    wh.on('error', () => {});
    const schemas: WarehouseSchemas = { staging: 'staging', analytics: 'analytics', meta: 'cdc_meta' };
    const kafka = new kafkajs.Kafka({ clientId: 'restart-test', brokers: [urls.kafka], logLevel: kafkajs.logLevel.NOTHING });
    const admin = kafka.admin();
    const redis = new Redis(urls.redis, { maxRetriesPerRequest: 1 });
    const topics = TABLE_NAMES.map((t) => `shop.public.${t}`);
    const clickTopic = 'clickstream.events';
    const clickProducer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: kafkajs.Partitioners.DefaultPartitioner });
    try {
      await migrate(src, 'source');
      await migrate(wh, 'warehouse');
      const spawnApp = (name: string, main: string) => {
        const log = join(state, `${name}.log`);
        const fd = openSync(log, 'a');
        const child = spawn(process.execPath, ['--import', 'tsx', join(REPO, main)], { env, stdio: ['ignore', fd, fd] });
        children.push({ name, child, log });
        return child;
      };
      const alive = () => children.filter((c) => c.child.exitCode !== null || c.child.signalCode !== null)
        .map((c) => `${c.name} exited (${c.child.exitCode ?? c.child.signalCode}):\n${tail(c.log)}`);

      const gen = new TrafficGenerator(src, { schema: 'public', seed: SEED });
      await gen.seedCatalog(120, 30);
      spawnApp('capture', 'src/cli/capture.ts');
      spawnApp('consumer', 'consumers/warehouse/main.ts');
      spawnApp('clickstream', 'consumers/clickstream/main.ts');

      // Steady load; a write that fails while Postgres restarts is simply not made (the source is the truth).
      let writing = true;
      let writeFailures = 0;
      // Clickstream events, one chunk a second; a chunk whose send fails (broker or registry away) is sent
      // again whole, so some events arrive twice, which the consumer must absorb (event_id is the key).
      const registry = createRegistry(urls.registry);
      await Promise.all([admin.connect(), clickProducer.connect()]);
      const clickSent: PlannedSend[] = [];
      let clickPlan: PlannedSend[] = [];
      let clickPlans = 0;
      let clickFailures = 0;
      const clicker = (async () => {
        let chunk: PlannedSend[] = [];
        while (writing) {
          if (chunk.length === 0) {
            if (clickPlan.length === 0) {
              clickPlan = planClickstream({ ...DEFAULT_PLAN, seed: SEED + clickPlans, visitors: 300, startMs: Date.UTC(2026, 4, 1 + clickPlans, 8) });
              clickPlans += 1;
            }
            chunk = clickPlan.splice(0, 25);
          }
          try {
            await produceClickstream({ producer: clickProducer, admin, registry, topic: clickTopic, partitions: 3 }, chunk);
            clickSent.push(...chunk);
            chunk = [];
          } catch {
            clickFailures += 1;
          }
          await sleep(1000);
        }
      })();
      const writer = (async () => {
        while (writing) {
          try {
            await gen.placeOrders(2, 2);
            await gen.sideEffects(DEFAULT_MIX);
            await gen.sideEffects(DEFAULT_MIX);
          } catch {
            writeFailures += 1;
            await sleep(200);
          }
          await sleep(20);
        }
      })();

      const applied = async (group: string): Promise<number> => {
        const { rows } = await wh.query(`SELECT coalesce(sum(next_offset), 0)::text AS n FROM cdc_meta.consumer_offsets WHERE consumer_group = $1`, [group]);
        return Number(rows[0].n);
      };
      // Both groups apply something new after each restart.
      const progress = async (what: string) => {
        const before = new Map<string, number>();
        const moved = new Set<string>();
        const deadline = Date.now() + 120_000;
        for (;;) {
          expect(alive(), `${what} (${ctx})`).toEqual([]);
          for (const group of ['warehouse', 'clickstream']) {
            const n = await applied(group).catch(() => -1);
            if (n < 0) continue;
            if (!before.has(group)) before.set(group, n);
            else if (n > before.get(group)!) moved.add(group);
          }
          if (moved.size === 2) return;
          if (Date.now() > deadline) throw new Error(`no progress ${what} in 120 s (${ctx})\n${children.map((c) => `${c.name}:\n${tail(c.log)}`).join('\n')}`);
          await sleep(500);
        }
      };
      await progress('before the restarts');
      const restarts: Record<string, number> = {};
      for (const service of ['kafka', 'postgres', 'registry']) {
        const t0 = Date.now();
        stack('restart', service);
        restarts[service] = Date.now() - t0;
        await progress(`after the ${service} restart`);
        await sleep(2000);
      }
      writing = false;
      await Promise.all([writer, clicker]);

      // Drain, then compare everything.
      const counts = async (pool: pg.Pool, name: (t: TableName) => string) =>
        JSON.stringify((await pool.query(`SELECT ${TABLE_NAMES.map((t) => `(SELECT count(*) FROM ${name(t)})`).join(', ')}`)).rows[0]);
      const deadline = Date.now() + 120_000;
      while (Date.now() < deadline) {
        const lag = await groupLag(admin, wh, schemas, 'warehouse', topics).catch(() => -1);
        const clickLag = await groupLag(admin, wh, schemas, 'clickstream', [clickTopic]).catch(() => -1);
        if (lag === 0 && clickLag === 0 && (await counts(src, (t) => `public.${t}`)) === (await counts(wh, (t) => `staging.stg_${t}`))) break;
        await sleep(500);
      }
      await sleep(1500);
      for (const t of TABLE_NAMES) {
        const cols = Object.keys(TABLES[t].columns);
        const render = cols.map((c) => (TABLES[t].columns[c] === 'timestamptz' ? `${isoSql(c)} AS ${c}` : `${c}::text AS ${c}`)).join(', ');
        const rowsOf = async (pool: pg.Pool, from: string) => (await pool.query(`SELECT ${render} FROM ${from}`)).rows.map((r) => JSON.stringify(cols.map((c) => r[c] ?? null))).sort();
        const want = await rowsOf(src, `public.${t}`);
        const got = await rowsOf(wh, `staging.stg_${t}`);
        const gotSet = new Set(got);
        const wantSet = new Set(want);
        expect({ rows: got.length, onlySource: want.filter((r) => !gotSet.has(r)).slice(0, 3), onlyStaging: got.filter((r) => !wantSet.has(r)).slice(0, 3) }, `stg_${t} vs source (${ctx})`)
          .toEqual({ rows: want.length, onlySource: [], onlyStaging: [] });
      }
      const client = await wh.connect();
      try {
        for (const d of await diffDerivedTables(client, schemas)) expect(d, `${d.table} (${ctx})`).toMatchObject({ missing: 0, unexpected: 0 });
        // Clickstream: every event sent is staged once, and every model equals the batch SQL.
        const staged = await client.query<{ event_id: string }>('SELECT event_id::text FROM staging.stg_events');
        expect(new Set(staged.rows.map((r) => r.event_id)), ctx).toEqual(new Set(clickSent.map((p) => p.value.event_id)));
        for (const c of await verifyClickstream(client, schemas)) {
          expect({ table: c.table, missing: c.missing, unexpected: c.unexpected, sample: c.sample }, ctx).toEqual({ table: c.table, missing: 0, unexpected: 0, sample: [] });
          expect(c.expectedRows, `${c.table} (${ctx})`).toBeGreaterThan(0);
        }
      } finally {
        client.release();
      }
      const deadlineRedis = Date.now() + 30_000;
      while (Date.now() < deadlineRedis && Number((await wh.query('SELECT count(*) n FROM cdc_meta.redis_outbox')).rows[0].n) > 0) await sleep(300);
      expect(await diffRedisClv(wh, redis, schemas, ''), ctx).toEqual({ missing: [], stale: [], extra: [] });
      // Not vacuous: real traffic, some of it refused while Postgres was down, and both processes never exited.
      expect(gen.stats.orders, ctx).toBeGreaterThan(50);
      // Events flow all through the restarts (25 a second), however fast the restarts were.
      expect(clickSent.length, ctx).toBeGreaterThan(100);
      expect(alive(), ctx).toEqual([]);
      // What the processes went through (from their logs): waits and in-process restarts.
      const seen = Object.fromEntries(children.map((c) => {
        const text = readFileSync(c.log, 'utf8');
        return [c.name, { waiting: (text.match(/"msg":"waiting for /g) ?? []).length, restarted: (text.match(/restarting the services/g) ?? []).length, consumerRestarts: (text.match(/consumer failed; restarting it/g) ?? []).length }];
      }));
      if (process.env.TEST_VERBOSE) console.log(JSON.stringify({ seed: SEED, restarts, writeFailures, clickSent: clickSent.length, clickFailures, stats: gen.stats, seen }));
    } finally {
      for (const { child } of children) child.kill('SIGTERM');
      await Promise.all(children.map(({ child }) => new Promise<void>((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r())))));
      await clickProducer.disconnect().catch(() => {});
      await admin.disconnect().catch(() => {});
      redis.disconnect();
      await src.end().catch(() => {});
      await wh.end().catch(() => {});
    }
  }, 600_000);
});
