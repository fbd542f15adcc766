import { createServer } from 'node:net';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import pg from 'pg';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { rebuildRedisClv } from '../../src/api/clv-rebuild.ts';
import { loadApiConfig } from '../../src/api/config.ts';
import { ApiService } from '../../src/api/server.ts';
import { migrate } from '../../src/migrations/runner.ts';
import type { Logger } from '../../src/logger.ts';
import { clvKey } from '../../src/sinks/redis/clv-redis.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * The CLV API against the real warehouse Postgres and Redis. Each test gets
 * its own staging/analytics/meta schemas and Redis key prefix, starts an
 * ApiService on a free port and inserts CLV rows directly (the consumers
 * that normally write them are tested on their own). Redis is filled through
 * the consumers' version-guarded script, via the rebuild.
 */

const TOKEN = 'test-token-6f1c2b9a4d7e8f30';

interface Ctx {
  id: string;
  an: string;
  pool: pg.Pool;
  redis: Redis;
  api: ApiService;
  url: string;
  logs: string[];
}

const open: Ctx[] = [];

afterEach(async () => {
  for (const c of open.splice(0)) {
    await c.api.stop();
    const keys = await c.redis.keys(`${c.id}*`);
    if (keys.length > 0) await c.redis.del(...keys);
    c.redis.disconnect();
    await c.pool.query(`DROP SCHEMA IF EXISTS ${c.id}_stg, ${c.id}_an, ${c.id}_meta CASCADE`);
    await c.pool.end();
  }
});

async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** A logger whose every line is kept, at trace level, to check what the API logs. */
function capturingLogger(lines: string[]): Logger {
  const sink = new Writable({ write(chunk, _enc, cb) { lines.push(String(chunk)); cb(); } });
  return pino({ level: 'trace' }, sink);
}

async function setup(env: Record<string, string> = {}): Promise<Ctx> {
  const id = uniqueId('api');
  const pool = new pg.Pool({ connectionString: stackEnv.warehouseUrl, max: 3 });
  await migrate(pool, 'warehouse', { schemas: { staging_schema: `${id}_stg`, analytics_schema: `${id}_an`, meta_schema: `${id}_meta` } });
  const redis = new Redis(stackEnv.redisUrl);
  const logs: string[] = [];
  const config = loadApiConfig({
    WAREHOUSE_DATABASE_URL: stackEnv.warehouseUrl,
    REDIS_URL: stackEnv.redisUrl,
    API_PORT: '0',
    ANALYTICS_SCHEMA: `${id}_an`,
    REDIS_KEY_PREFIX: `${id}:`,
    ...env,
  });
  const api = new ApiService(config, capturingLogger(logs));
  await api.start(new AbortController().signal);
  const ctx: Ctx = { id, an: `${id}_an`, pool, redis, api, url: api.url, logs };
  open.push(ctx);
  return ctx;
}

interface Row {
  customer_id: string;
  total_orders?: number;
  total_items?: number;
  total_revenue?: string;
  avg_order_value?: string;
  first_order_date?: string;
  last_order_date?: string;
  version?: number;
}

async function insertClv(c: Ctx, r: Row): Promise<void> {
  await c.pool.query(
    `INSERT INTO ${c.an}.customer_lifetime_value
       (customer_id, customer_key, customer_segment, total_orders, total_items, total_revenue, avg_order_value,
        first_order_date, last_order_date, customer_lifetime_days, value_segment, frequency_segment, version)
     VALUES ($1::bigint, md5($1::text), 'gold', $2, $3, $4, $5, $6::timestamptz, $7::timestamptz,
             floor(extract(epoch FROM $7::timestamptz - $6::timestamptz) / 86400), 'high', 'repeat', $8)`,
    [r.customer_id, r.total_orders ?? 3, r.total_items ?? 7, r.total_revenue ?? '12345678901234.10', r.avg_order_value ?? '4115226300411.37',
      r.first_order_date ?? '2023-06-01T08:30:00.123456Z', r.last_order_date ?? '2024-01-01T12:00:00.123456Z', r.version ?? 1],
  );
}

async function fillRedis(c: Ctx): Promise<void> {
  await rebuildRedisClv({ pool: c.pool, redis: c.redis, analyticsSchema: c.an, keyPrefix: `${c.id}:` });
}

async function get(c: Ctx, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(`${c.url}${path}`, { headers });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // /metrics is text
  }
  return { status: res.status, body, headers: res.headers };
}

describe('GET /customers/:id/clv', () => {
  it('answers a Redis hit with every SPEC field, exact money, and the same figures Postgres gives on a miss', async () => {
    const c = await setup();
    await insertClv(c, { customer_id: '42', version: 7 });
    await fillRedis(c);

    const hit = await get(c, '/customers/42/clv?as_of=2024-03-01T00:00:00Z');
    expect(hit.status).toBe(200);
    expect(hit.body).toEqual({
      customer_id: '42',
      customer_key: expect.stringMatching(/^[0-9a-f]{32}$/),
      customer_segment: 'gold',
      total_orders: 3,
      total_items: 7,
      total_revenue: '12345678901234.10',
      avg_order_value: '4115226300411.37',
      first_order_date: '2023-06-01T08:30:00.123456Z',
      last_order_date: '2024-01-01T12:00:00.123456Z',
      customer_lifetime_days: 214,
      value_segment: 'high',
      frequency_segment: 'repeat',
      version: '7',
      as_of: '2024-03-01T00:00:00.000000Z',
      days_since_last_order: 59,
      recency_segment: 'cooling',
      source: 'redis',
    });

    await c.redis.del(clvKey(`${c.id}:`, '42'));
    const miss = await get(c, '/customers/42/clv?as_of=2024-03-01T00:00:00Z');
    expect(miss.status).toBe(200);
    expect(miss.body).toEqual({ ...hit.body, source: 'postgres' });
  });

  it('reads Redis before Postgres: a figure already in Redis is served even if the row moved on', async () => {
    const c = await setup();
    await insertClv(c, { customer_id: '7', total_revenue: '10.00', version: 1 });
    await fillRedis(c);
    await c.pool.query(`UPDATE ${c.an}.customer_lifetime_value SET total_revenue = 99.99, version = 2 WHERE customer_id = 7`);

    const res = await get(c, '/customers/7/clv');
    expect(res.body).toMatchObject({ source: 'redis', total_revenue: '10.00', version: '1' });
  });

  it('answers from Postgres when Redis is down, and readyz stays ready', async () => {
    const c = await setup({ REDIS_URL: `redis://127.0.0.1:${await closedPort()}` });
    await insertClv(c, { customer_id: '5', total_revenue: '250.05' });

    const res = await get(c, '/customers/5/clv');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ customer_id: '5', total_revenue: '250.05', source: 'postgres' });

    const ready = await get(c, '/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({ status: 'ready', postgres: 'up', redis: 'down', pid: process.pid });

    const metrics = (await get(c, '/metrics')).body as string;
    expect(metrics).toMatch(/api_clv_redis_lookups_total\{result="error"\} 1\b/);
    expect(metrics).toMatch(/api_clv_postgres_fallbacks_total\{reason="redis_error"\} 1\b/);
  });

  it('still serves Redis hits when Postgres is down; misses and readyz answer 503', async () => {
    const c = await setup();
    await insertClv(c, { customer_id: '11' });
    await fillRedis(c);
    // A second service on the same data, with the warehouse pointing at a closed port.
    const down = new ApiService(loadApiConfig({
      WAREHOUSE_DATABASE_URL: `postgres://postgres@127.0.0.1:${await closedPort()}/warehouse`,
      REDIS_URL: stackEnv.redisUrl, API_PORT: '0', ANALYTICS_SCHEMA: c.an, REDIS_KEY_PREFIX: `${c.id}:`,
    }), capturingLogger([]));
    await down.start(new AbortController().signal);
    try {
      const hit = await fetch(`${down.url}/customers/11/clv`);
      expect(hit.status).toBe(200);
      expect(((await hit.json()) as { source: string }).source).toBe('redis');

      const miss = await fetch(`${down.url}/customers/12/clv`);
      expect(miss.status).toBe(503);
      expect(await miss.json()).toEqual({ error: expect.any(String), code: 'WAREHOUSE_UNAVAILABLE' });

      const ready = await fetch(`${down.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toEqual({ status: 'unready', postgres: 'down', redis: 'up', pid: process.pid });
    } finally {
      await down.stop();
    }
  });

  it('answers 404 JSON for a customer without a CLV row', async () => {
    const c = await setup();
    const res = await get(c, '/customers/999/clv');
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.body).toEqual({ error: expect.stringContaining('999'), code: 'CUSTOMER_NOT_FOUND' });
  });

  it('answers 400 JSON for bad ids and bad as_of', async () => {
    const c = await setup();
    await insertClv(c, { customer_id: '1' });
    for (const bad of ['abc', '-1', '1.5', '1e3', '9223372036854775808', '%20']) {
      const res = await get(c, `/customers/${bad}/clv`);
      expect(res.status, bad).toBe(400);
      expect(res.body, bad).toEqual({ error: expect.any(String), code: 'INVALID_CUSTOMER_ID' });
    }
    // The largest int64 is a valid id, merely unknown.
    expect((await get(c, '/customers/9223372036854775807/clv')).status).toBe(404);
    for (const bad of ['yesterday', '2024-05-01T00:00:00', '2024-02-30', '2024-05-01T00:00:00Z&as_of=2024-05-02']) {
      const res = await get(c, `/customers/1/clv?as_of=${bad}`);
      expect(res.status, bad).toBe(400);
      expect(res.body, bad).toEqual({ error: expect.any(String), code: 'INVALID_AS_OF' });
    }
  });

  it('computes recency at read time against as_of, to the microsecond, from both stores', async () => {
    const c = await setup();
    await insertClv(c, { customer_id: '3', last_order_date: '2024-01-01T12:00:00.123456Z' });
    await fillRedis(c);
    const at = async (asOf: string) => {
      const r = (await get(c, `/customers/3/clv?as_of=${encodeURIComponent(asOf)}`)).body;
      return `${r.days_since_last_order} ${r.recency_segment} ${r.source}`;
    };
    expect(await at('2024-01-31T12:00:00.123456Z')).toBe('30 active redis');
    expect(await at('2024-02-01T12:00:00.123455Z')).toBe('30 active redis');
    expect(await at('2024-02-01T12:00:00.123456Z')).toBe('31 cooling redis');
    expect(await at('2024-02-01T13:00:00.123456+01:00')).toBe('31 cooling redis');
    expect(await at('2024-03-31')).toBe('89 cooling redis');
    expect(await at('2024-06-29T12:00:00.123456Z')).toBe('180 at_risk redis');
    expect(await at('2024-06-30T12:00:00.123456Z')).toBe('181 churned redis');
    await c.redis.del(clvKey(`${c.id}:`, '3'));
    expect(await at('2024-02-01T12:00:00.123456Z')).toBe('31 cooling postgres');

    // Without as_of the clock decides: 2024-01-01 is long past.
    const now = (await get(c, '/customers/3/clv')).body;
    const expectedDays = Math.floor((Date.now() - Date.parse('2024-01-01T12:00:00.123Z')) / 86_400_000);
    expect(now.recency_segment).toBe('churned');
    expect(Math.abs(now.days_since_last_order - expectedDays)).toBeLessThanOrEqual(1);
  });

  it('uses configured recency thresholds', async () => {
    const c = await setup({ CLV_RECENCY_ACTIVE_DAYS: '7', CLV_RECENCY_COOLING_DAYS: '14', CLV_RECENCY_AT_RISK_DAYS: '28' });
    await insertClv(c, { customer_id: '4', last_order_date: '2024-01-01T00:00:00Z' });
    expect((await get(c, '/customers/4/clv?as_of=2024-01-09')).body.recency_segment).toBe('cooling');
    expect((await get(c, '/customers/4/clv?as_of=2024-01-30')).body.recency_segment).toBe('churned');
  });
});

describe('GET /customers/top', () => {
  it('orders by revenue, orders or items, breaks ties by id, honours limit and validates it', async () => {
    const c = await setup();
    const rows: Row[] = [
      { customer_id: '1', total_revenue: '100.00', total_orders: 5, total_items: 1 },
      { customer_id: '2', total_revenue: '300.50', total_orders: 1, total_items: 9 },
      { customer_id: '3', total_revenue: '300.49', total_orders: 5, total_items: 4 },
      { customer_id: '4', total_revenue: '1000000000000000000.01', total_orders: 2, total_items: 9 },
    ];
    for (const r of rows) await insertClv(c, r);
    const ids = async (q: string) => {
      const res = await get(c, `/customers/top${q}`);
      expect(res.status, q).toBe(200);
      return (res.body.customers as { customer_id: string }[]).map((x) => x.customer_id).join(',');
    };
    expect(await ids('')).toBe('4,2,3,1');
    expect(await ids('?by=revenue&limit=2')).toBe('4,2');
    expect(await ids('?by=orders')).toBe('1,3,4,2');
    expect(await ids('?by=items&limit=3')).toBe('2,4,3');

    const top = await get(c, '/customers/top?limit=1');
    expect(top.body).toMatchObject({ by: 'revenue', limit: 1 });
    expect(top.body.customers[0]).toMatchObject({ total_revenue: '1000000000000000000.01', source: 'postgres' });

    for (const q of ['?by=margin', '?limit=0', '?limit=1001', '?limit=x']) {
      const res = await get(c, `/customers/top${q}`);
      expect(res.status, q).toBe(400);
      expect(res.body.code, q).toBe('INVALID_QUERY');
    }
  });
});

describe('auth', () => {
  it('with a token, every route but /healthz needs it, and the token never reaches the logs', async () => {
    const c = await setup({ API_AUTH_TOKEN: TOKEN, LOG_LEVEL: 'trace' });
    await insertClv(c, { customer_id: '8' });
    const bearer = { authorization: `Bearer ${TOKEN}` };

    expect((await get(c, '/healthz')).status).toBe(200);
    for (const path of ['/customers/8/clv', '/customers/top', '/readyz', '/metrics', '/nowhere']) {
      const none = await get(c, path);
      expect(none.status, path).toBe(401);
      expect(none.body, path).toEqual({ error: expect.any(String), code: 'UNAUTHORIZED' });
      expect(none.headers.get('www-authenticate')).toBe('Bearer');
      expect((await get(c, path, { authorization: `Bearer ${TOKEN}x` })).status, path).toBe(401);
      expect((await get(c, path, { authorization: TOKEN })).status, path).toBe(401);
    }
    expect((await get(c, '/customers/8/clv', bearer)).status).toBe(200);
    expect((await get(c, '/customers/top', bearer)).status).toBe(200);
    expect((await get(c, '/readyz', bearer)).status).toBe(200);
    expect((await get(c, '/metrics', bearer)).status).toBe(200);
    expect((await get(c, '/nowhere', bearer)).status).toBe(404);
    // A failing request logs at error level; make one to check that path too.
    await c.pool.query(`ALTER TABLE ${c.an}.customer_lifetime_value RENAME TO clv_gone`);
    expect((await get(c, '/customers/top', bearer)).status).toBe(503);

    const all = c.logs.join('');
    expect(c.logs.length).toBeGreaterThan(1);
    expect(all).toContain('the warehouse database is unavailable');
    expect(all).not.toContain(TOKEN);
  });

  it('without a token, every route answers without credentials', async () => {
    const c = await setup();
    await insertClv(c, { customer_id: '8' });
    for (const path of ['/healthz', '/readyz', '/metrics', '/customers/8/clv', '/customers/top']) {
      expect((await get(c, path)).status, path).toBe(200);
    }
  });
});

describe('ops routes', () => {
  it('healthz and readyz report; metrics count requests, latency, Redis hits and fallbacks', async () => {
    const c = await setup();
    await insertClv(c, { customer_id: '21' });
    await insertClv(c, { customer_id: '22' });
    await fillRedis(c);
    await c.redis.del(clvKey(`${c.id}:`, '22'));

    expect((await get(c, '/healthz')).body).toEqual({ status: 'ok' });
    expect((await get(c, '/readyz')).body).toEqual({ status: 'ready', postgres: 'up', redis: 'up', pid: process.pid });
    await get(c, '/customers/21/clv');
    await get(c, '/customers/21/clv');
    await get(c, '/customers/22/clv');
    await get(c, '/customers/23/clv');

    const m = (await get(c, '/metrics')).body as string;
    expect(m).toMatch(/api_clv_redis_lookups_total\{result="hit"\} 2\b/);
    expect(m).toMatch(/api_clv_redis_lookups_total\{result="miss"\} 2\b/);
    expect(m).toMatch(/api_clv_postgres_fallbacks_total\{reason="miss"\} 2\b/);
    expect(m).toMatch(/api_http_requests_total\{method="GET",route="\/customers\/:id\/clv",status="200"\} 3\b/);
    expect(m).toMatch(/api_http_requests_total\{method="GET",route="\/customers\/:id\/clv",status="404"\} 1\b/);
    expect(m).toMatch(/api_http_request_duration_seconds_count\{method="GET",route="\/customers\/:id\/clv",status="200"\} 3\b/);
  });
});
