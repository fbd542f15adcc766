import type { Cluster } from 'ioredis';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClvLookup } from '../../src/api/clv-lookup.ts';
import { ClvPostgres } from '../../src/api/clv-pg.ts';
import { RedisClvStore } from '../../src/api/clv-store.ts';
import { ApiMetrics } from '../../src/api/metrics.ts';
import { createLookupRedis } from '../../src/api/server.ts';
import { migrate } from '../../src/migrations/runner.ts';
import { clvPayloadSql } from '../../consumers/warehouse/derived-sql.ts';
import type { WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { ClvRedisSink, clvKey, type OutboxRow } from '../../src/sinks/redis/clv-redis.ts';
import { diffRedisClv } from '../../src/sinks/redis/compare.ts';
import { createRedisClient, scanKeys, unlinkKeys, type RedisClient } from '../../src/sinks/redis/redis-client.ts';
import { runCli } from '../helpers/run-cli.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';
import { startThrowawayRedisCluster, type ThrowawayRedisCluster } from '../helpers/throwaway-redis-cluster.ts';

/**
 * CLV in a real Redis Cluster (six redis-server nodes started by
 * scripts/stack.sh with STACK_REDIS_CLUSTER=1 on ports 22101-22106): the
 * consumers' outbox sink writes while a master is SIGKILLed and its replica
 * takes over, then lookups, `redis rebuild` and the Redis/Postgres compare
 * go through the cluster client. Postgres is the shared stack's.
 */
// below the ephemeral port range, as testPortRange (test/helpers/throwaway-kafka.ts): a master restarts on these
const BASE_PORT = 22100;
const CUSTOMERS = 2000;
const silent = pino({ level: process.env.TEST_LOG ?? 'silent' });

let cluster: ThrowawayRedisCluster;
let pool: pg.Pool;
const id = uniqueId('redis_cluster');
const schemas: WarehouseSchemas = { staging: `${id}_stg`, analytics: `${id}_an`, meta: `${id}_meta` };
const prefix = `${id}:`;
const an = `"${schemas.analytics}"`;
const meta = `"${schemas.meta}"`;

beforeAll(async () => {
  cluster = await startThrowawayRedisCluster(BASE_PORT);
  pool = new pg.Pool({ connectionString: stackEnv.warehouseUrl, max: 4 });
  await migrate(pool, 'warehouse', { schemas: { staging_schema: schemas.staging, analytics_schema: schemas.analytics, meta_schema: schemas.meta } });
}, 120_000);

afterAll(async () => {
  await pool?.query(`DROP SCHEMA IF EXISTS "${schemas.staging}", ${an}, ${meta} CASCADE`).catch(() => {});
  await pool?.end();
  await cluster?.stop();
});

/** Commits CLV rows and their outbox rows in one transaction, as a consumer batch does; returns the outbox rows. */
async function commit(sql: string, params: unknown[]): Promise<OutboxRow[]> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    await c.query(sql, params);
    const { rows } = await c.query<OutboxRow>(
      `INSERT INTO ${meta}.redis_outbox (key_prefix, customer_id, version, payload)
       SELECT $1, customer_id::bigint, version::bigint, payload FROM (${clvPayloadSql(an, 'v.customer_id = ANY($2::bigint[])')}) x
       RETURNING id::text, customer_id::text, version::text, payload`, [prefix, params[0]]);
    await c.query('COMMIT');
    return rows;
  } catch (err) {
    await c.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    c.release();
  }
}

async function removeCustomers(ids: number[]): Promise<OutboxRow[]> {
  const { rows } = await pool.query<OutboxRow>(
    `WITH d AS (DELETE FROM ${an}.customer_lifetime_value WHERE customer_id = ANY($2::bigint[]) RETURNING customer_id, version)
     INSERT INTO ${meta}.redis_outbox (key_prefix, customer_id, version, payload)
     SELECT $1, customer_id, version + 100000, NULL FROM d RETURNING id::text, customer_id::text, version::text, payload`, [prefix, ids]);
  return rows;
}

const sample = (n: number, of: number) => Array.from({ length: n }, () => 1 + Math.floor(Math.random() * of));

describe('CLV on a Redis Cluster', () => {
  it('keeps Redis equal to Postgres through a master SIGKILLed during writes; lookups, rebuild and compare go through the cluster', async () => {
    const target = { redisUrl: stackEnv.redisUrl, redisClusterNodes: cluster.nodes };
    // The warehouse consumer's own client options (consumers/warehouse/main.ts).
    const redis: RedisClient = createRedisClient(target, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true });
    redis.on('error', () => {});
    await redis.connect();
    const sink = new ClvRedisSink(redis, pool, schemas, prefix, silent);
    try {
      const all = Array.from({ length: CUSTOMERS }, (_, i) => i + 1);
      sink.publish(await commit(
        `INSERT INTO ${an}.customer_lifetime_value
           (customer_id, customer_key, customer_segment, total_orders, total_items, total_revenue, avg_order_value,
            first_order_date, last_order_date, customer_lifetime_days, value_segment, frequency_segment, version)
         SELECT g, md5(g::text), CASE WHEN g % 2 = 0 THEN 'gold' END, 1, 2, g + 0.01, g + 0.01,
                '2024-01-01T00:00:00.000001Z', '2024-02-01T00:00:00.000001Z', 31, 'low', 'one_time', g
         FROM unnest($1::bigint[]) g`, [all]));
      expect(await sink.flush()).toBe(0);
      // The keys spread over all three masters (the id is the hash tag, not the prefix).
      const perMaster = await Promise.all((redis as Cluster).nodes('master').map((n) => n.dbsize()));
      expect(perMaster).toHaveLength(3);
      for (const n of perMaster) expect(n).toBeGreaterThan(CUSTOMERS / 6);

      // Writes go on (a batch every 50 ms, the consumer's retry timer every 200 ms) while a master dies.
      const before = await cluster.topology();
      const victim = before.find((n) => n.role === 'master')!;
      const itsReplica = before.find((n) => n.masterPort === victim.port)!;
      expect(itsReplica).toBeDefined();
      // Outbox depth sampled every 200 ms: rows leave it only once Redis holds them.
      let maxDepth = 0;
      const depth = setInterval(() => void pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${meta}.redis_outbox`)
        .then(({ rows }) => (maxDepth = Math.max(maxDepth, Number(rows[0]!.n)))).catch(() => {}), 200);
      const retry = setInterval(() => void sink.flush(), 200);
      const removed = new Set<number>();
      const t0 = Date.now();
      let killedAt = 0;
      let tookOverAt = 0;
      let polled = 0;
      let rounds = 0;
      // Until a second after the replica took over (bounded): writes before, during and after the failover.
      while (!tookOverAt || Date.now() - tookOverAt < 1_000) {
        if (!killedAt && Date.now() - t0 > 1_500) {
          cluster.kill(victim.port);
          killedAt = Date.now();
        }
        if (killedAt && !tookOverAt && Date.now() - polled > 300) {
          polled = Date.now();
          if ((await cluster.topology()).find((n) => n.port === itsReplica.port)?.role === 'master') tookOverAt = Date.now();
          expect(Date.now() - killedAt, 'replica took over within 30 s').toBeLessThan(30_000);
        }
        const ids = sample(150, CUSTOMERS).filter((x) => !removed.has(x));
        sink.publish(await commit(
          `UPDATE ${an}.customer_lifetime_value SET total_orders = total_orders + 1, total_revenue = total_revenue + 1.25, version = version + 10000
           WHERE customer_id = ANY($1::bigint[])`, [ids]));
        if (rounds % 10 === 5) {
          const gone = sample(5, CUSTOMERS).filter((x) => !removed.has(x));
          gone.forEach((x) => removed.add(x));
          sink.publish(await removeCustomers(gone));
        }
        rounds++;
        await new Promise((r) => setTimeout(r, 50));
      }
      clearInterval(retry);
      clearInterval(depth);
      // The replica took over the dead master's slots.
      const after = await cluster.topology();
      expect(after.find((n) => n.port === itsReplica.port)).toMatchObject({ role: 'master' });
      expect(after.find((n) => n.port === victim.port)).toBeUndefined();
      // Writes to the dead master's slots waited in the outbox (seconds of batches, 150 rows each) until its replica took over.
      expect(maxDepth).toBeGreaterThan(1000);
      const deadline = Date.now() + 30_000;
      let left = await sink.flush();
      while (left > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        left = await sink.flush();
      }
      expect(left).toBe(0);
      const { rows: [outbox] } = await pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${meta}.redis_outbox`);
      expect(outbox?.n).toBe('0');
      expect(await diffRedisClv(pool, redis, schemas, prefix)).toEqual({ missing: [], stale: [], extra: [] });
      expect(removed.size).toBeGreaterThan(0);
      for (const x of removed) expect(await redis.exists(clvKey(prefix, String(x), true))).toBe(0);

      // Lookups: the API's client and store read the tagged keys through the cluster.
      const lookupRedis = createLookupRedis(target, 500, silent);
      await lookupRedis.connect();
      try {
        const clvPg = new ClvPostgres(pool, schemas.analytics);
        const lookup = new ClvLookup(new RedisClvStore(lookupRedis, prefix), clvPg, new ApiMetrics(), silent);
        for (const x of sample(40, CUSTOMERS).filter((c) => !removed.has(c))) {
          const found = await lookup.find(String(x));
          expect(found?.source).toBe('redis');
          expect(found?.record).toEqual(await clvPg.byId(String(x)));
        }
      } finally {
        lookupRedis.disconnect();
      }

      // The killed node comes back (stack.sh up) as a replica of the node that replaced it.
      await cluster.up();
      const healed = await cluster.topology();
      expect(healed.find((n) => n.port === victim.port)).toMatchObject({ role: 'replica', masterPort: itsReplica.port });

      // `redis rebuild` fills the cluster: keys lost on every master come back, a stray hash goes.
      const lost: string[] = [];
      for await (const keys of scanKeys(redis, `${prefix}clv:*`, 500)) lost.push(...keys.filter((_, i) => i % 3 === 0));
      await unlinkKeys(redis, lost);
      await redis.hset(clvKey(prefix, '999999', true), { version: '7', customer_id: '999999', total_revenue: '1.00' });
      const diff = await diffRedisClv(pool, redis, schemas, prefix);
      expect(diff.missing.length).toBe(lost.length);
      expect(diff.extra).toEqual(['999999']);
      const res = await runCli(['redis', 'rebuild'], {
        ...process.env, WAREHOUSE_DATABASE_URL: stackEnv.warehouseUrl, REDIS_CLUSTER_NODES: cluster.nodes.join(','),
        ANALYTICS_SCHEMA: schemas.analytics, REDIS_KEY_PREFIX: prefix, LOG_LEVEL: 'warn',
      });
      expect(res.stderr).not.toMatch(/error/i);
      expect(res.code).toBe(0);
      expect(res.stdout).toContain(`written ${lost.length},`);
      expect(res.stdout).toContain('removed 1');
      expect(await diffRedisClv(pool, redis, schemas, prefix)).toEqual({ missing: [], stale: [], extra: [] });
    } finally {
      await sink.published();
      redis.disconnect();
    }
  }, 150_000);
});
