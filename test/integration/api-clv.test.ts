import { afterEach, describe, expect, it } from 'vitest';
import { loadApiConfig } from '../../src/api/config.ts';
import { ApiService } from '../../src/api/server.ts';
import { clvKey } from '../../src/sinks/redis/clv-redis.ts';
import { capturingLogger, closedPort, fillRedis, get, insertClv, setup, stopApis, type Row } from '../helpers/api-harness.ts';
import { stackEnv } from '../helpers/stack-env.ts';

/** The CLV API's routes against the real warehouse Postgres and Redis (test/helpers/api-harness.ts). */

const TOKEN = 'test-token-6f1c2b9a4d7e8f30';

afterEach(stopApis);

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
