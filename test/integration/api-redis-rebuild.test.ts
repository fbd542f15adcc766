import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { rebuildRedisClv, removeHashIfUnchanged, type RebuildProgress } from '../../src/api/clv-rebuild.ts';
import { migrate } from '../../src/migrations/runner.ts';
import { clvDeletedKey, clvKey } from '../../src/sinks/redis/clv-redis.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * redis:rebuild against the real warehouse and Redis: each test has its own
 * schemas and key prefix, CLV rows inserted directly.
 */

const REPO = fileURLToPath(new URL('../..', import.meta.url));

interface Ctx {
  id: string;
  an: string;
  prefix: string;
  pool: pg.Pool;
  redis: Redis;
}

const open: Ctx[] = [];

afterEach(async () => {
  for (const c of open.splice(0)) {
    await scanDel(c.redis, `${c.prefix}*`);
    c.redis.disconnect();
    await c.pool.query(`DROP SCHEMA IF EXISTS ${c.id}_stg, ${c.id}_an, ${c.id}_meta CASCADE`);
    await c.pool.end();
  }
});

async function scanDel(redis: Redis, pattern: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== '0');
}

async function setup(): Promise<Ctx> {
  const id = uniqueId('api_rebuild');
  const pool = new pg.Pool({ connectionString: stackEnv.warehouseUrl, max: 3 });
  await migrate(pool, 'warehouse', { schemas: { staging_schema: `${id}_stg`, analytics_schema: `${id}_an`, meta_schema: `${id}_meta` } });
  const c: Ctx = { id, an: `${id}_an`, prefix: `${id}:`, pool, redis: new Redis(stackEnv.redisUrl) };
  open.push(c);
  return c;
}

/** Customers first..last with revenue id + 0.01 and version = id, in one statement. */
async function insertRange(c: Ctx, first: number, last: number): Promise<void> {
  await c.pool.query(
    `INSERT INTO ${c.an}.customer_lifetime_value
       (customer_id, customer_key, customer_segment, total_orders, total_items, total_revenue, avg_order_value,
        first_order_date, last_order_date, customer_lifetime_days, value_segment, frequency_segment, version)
     SELECT g, md5(g::text), CASE WHEN g % 2 = 0 THEN 'gold' END, 1 + g % 7, 2 + g % 11, g + 0.01, round((g + 0.01) / (1 + g % 7), 2),
            '2024-01-01T00:00:00.000001Z', '2024-02-01T00:00:00.000001Z', 31, 'low', 'one_time', g
     FROM generate_series($1::bigint, $2::bigint) g`,
    [first, last],
  );
}

describe('redis:rebuild', () => {
  it('refills a flushed prefix in pages, at each row\'s version, and removes hashes of customers without a row', async () => {
    const c = await setup();
    await insertRange(c, 1, 2500);
    // A hash left from a customer whose CLV row is gone.
    await c.redis.hset(clvKey(c.prefix, '9999'), { version: '3', total_revenue: '1.00' });

    const seen: RebuildProgress[] = [];
    const result = await rebuildRedisClv({ pool: c.pool, redis: c.redis, analyticsSchema: c.an, keyPrefix: c.prefix, pageSize: 1000, onProgress: (p) => seen.push(p) });

    expect(result).toMatchObject({ total: 2500, rows: 2500, written: 2500, unchanged: 0, removed: 1 });
    expect(seen.filter((p) => p.phase === 'refill').map((p) => p.rows)).toEqual([1000, 2000, 2500]);
    expect(await c.redis.exists(clvKey(c.prefix, '9999'))).toBe(0);
    // The removal leaves a marker at the version it removed, like a consumer's own removal.
    expect(await c.redis.get(clvDeletedKey(c.prefix, '9999'))).toBe('3');

    const h = await c.redis.hgetall(clvKey(c.prefix, '1234'));
    expect(h).toEqual({
      version: '1234', customer_id: '1234', customer_key: expect.stringMatching(/^[0-9a-f]{32}$/), customer_segment: 'gold',
      total_orders: String(1 + (1234 % 7)), total_items: String(2 + (1234 % 11)), total_revenue: '1234.01',
      avg_order_value: expect.stringMatching(/^\d+\.\d{2}$/),
      first_order_date: '2024-01-01T00:00:00.000001Z', last_order_date: '2024-02-01T00:00:00.000001Z',
      customer_lifetime_days: '31', value_segment: 'low', frequency_segment: 'one_time',
    });
    // A null column is an absent field.
    expect(await c.redis.hexists(clvKey(c.prefix, '1235'), 'customer_segment')).toBe(0);

    // Flush the prefix (Redis lost its data) and rebuild again: everything back.
    await scanDel(c.redis, `${c.prefix}*`);
    const again = await rebuildRedisClv({ pool: c.pool, redis: c.redis, analyticsSchema: c.an, keyPrefix: c.prefix, pageSize: 700 });
    expect(again).toMatchObject({ rows: 2500, written: 2500, removed: 0 });
    const versions = await Promise.all([1, 700, 701, 1400, 2500].map((i) => c.redis.hget(clvKey(c.prefix, String(i)), 'version')));
    expect(versions).toEqual(['1', '700', '701', '1400', '2500']);

    // Nothing to do the third time.
    const idle = await rebuildRedisClv({ pool: c.pool, redis: c.redis, analyticsSchema: c.an, keyPrefix: c.prefix });
    expect(idle).toMatchObject({ rows: 2500, written: 0, unchanged: 2500, removed: 0 });
  });

  it('never overwrites a newer figure or a newer removal that a consumer wrote', async () => {
    const c = await setup();
    await insertRange(c, 1, 3);
    // Consumer writes after our rows were committed: customer 1 has a newer
    // figure, customer 2 was removed at a newer version.
    await c.redis.hset(clvKey(c.prefix, '1'), { version: '50', customer_id: '1', total_revenue: '777.77' });
    await c.redis.set(clvDeletedKey(c.prefix, '2'), '60');
    // Customer 3's hash is older than the row: the rebuild replaces it.
    await c.redis.hset(clvKey(c.prefix, '3'), { version: '2', customer_id: '3', total_revenue: '0.50' });

    const result = await rebuildRedisClv({ pool: c.pool, redis: c.redis, analyticsSchema: c.an, keyPrefix: c.prefix });
    expect(result).toMatchObject({ rows: 3, written: 1, unchanged: 2, removed: 0 });
    expect(await c.redis.hgetall(clvKey(c.prefix, '1'))).toEqual({ version: '50', customer_id: '1', total_revenue: '777.77' });
    expect(await c.redis.exists(clvKey(c.prefix, '2'))).toBe(0);
    expect(await c.redis.get(clvDeletedKey(c.prefix, '2'))).toBe('60');
    expect(await c.redis.hmget(clvKey(c.prefix, '3'), 'version', 'total_revenue')).toEqual(['3', '3.01']);
  });

  it('removes a stale hash only if no writer changed it since the rebuild looked', async () => {
    const c = await setup();
    // The rebuild saw version 5, then a consumer wrote version 8 (a new CLV row): the hash stays.
    await c.redis.hset(clvKey(c.prefix, '1'), { version: '8', total_revenue: '80.00' });
    expect(await removeHashIfUnchanged(c.redis, c.prefix, '1', '5')).toBe(false);
    expect(await c.redis.hget(clvKey(c.prefix, '1'), 'version')).toBe('8');
    expect(await c.redis.exists(clvDeletedKey(c.prefix, '1'))).toBe(0);

    // Unchanged: removed, with a marker at that version so an older pending figure cannot return...
    expect(await removeHashIfUnchanged(c.redis, c.prefix, '1', '8')).toBe(true);
    expect(await c.redis.exists(clvKey(c.prefix, '1'))).toBe(0);
    expect(await c.redis.get(clvDeletedKey(c.prefix, '1'))).toBe('8');
    // ...while a newer marker is kept as it is.
    await c.redis.hset(clvKey(c.prefix, '2'), { version: '3' });
    await c.redis.set(clvDeletedKey(c.prefix, '2'), '9');
    expect(await removeHashIfUnchanged(c.redis, c.prefix, '2', '3')).toBe(true);
    expect(await c.redis.get(clvDeletedKey(c.prefix, '2'))).toBe('9');

    // A consumer's later figure (higher version) still goes through the consumers' guard after the removal.
    await insertRange(c, 1, 1);
    await c.pool.query(`UPDATE ${c.an}.customer_lifetime_value SET version = 12 WHERE customer_id = 1`);
    const r = await rebuildRedisClv({ pool: c.pool, redis: c.redis, analyticsSchema: c.an, keyPrefix: c.prefix });
    expect(r).toMatchObject({ written: 1 });
    expect(await c.redis.hget(clvKey(c.prefix, '1'), 'version')).toBe('12');
  });

  it('runs as `npm run redis:rebuild` with the same env as the API and reports progress', async () => {
    const c = await setup();
    await insertRange(c, 10, 1209);
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn('npm', ['run', '--silent', 'redis:rebuild', '--', '--page-size', '500'], {
        cwd: REPO,
        env: { ...process.env, WAREHOUSE_DATABASE_URL: stackEnv.warehouseUrl, REDIS_URL: stackEnv.redisUrl, ANALYTICS_SCHEMA: c.an, REDIS_KEY_PREFIX: c.prefix, LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.on('exit', (exitCode) => resolve({ code: exitCode, stdout: out, stderr: err }));
    });
    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(/redis:rebuild done in [\d.]+ s: rows 1200\/1200 \(100%\), written 1200, unchanged or newer in Redis 0; keys checked 1200, removed 0/);
    // Not a terminal: plain progress lines (src/cli/progress.ts), the first after the first page, the last with the totals.
    expect(stderr).toMatch(/^redis rebuild: refill: 500\/1200 rows \(41%\)/m);
    expect(stderr).toMatch(/^redis rebuild: refill: 1200 written, 0 unchanged or newer in Redis: 1200\/1200 rows in /m);
    expect(await c.redis.hget(clvKey(c.prefix, '1209'), 'total_revenue')).toBe('1209.01');
  });
});
