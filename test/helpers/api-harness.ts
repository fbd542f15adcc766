import { createServer } from 'node:net';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import pg from 'pg';
import pino from 'pino';
import { rebuildRedisClv } from '../../src/api/clv-rebuild.ts';
import { loadApiConfig } from '../../src/api/config.ts';
import { ApiService } from '../../src/api/server.ts';
import { migrate } from '../../src/migrations/runner.ts';
import type { Logger } from '../../src/logger.ts';
import { stackEnv, uniqueId } from './stack-env.ts';

/**
 * The CLV API against the real warehouse Postgres and Redis, for the API's
 * integration tests. Each test gets its own staging/analytics/meta schemas
 * and Redis key prefix, starts an ApiService on a free port and inserts CLV
 * rows directly (the consumers that normally write them are tested on their
 * own). Redis is filled through the consumers' version-guarded script, via
 * the rebuild. Call `stopApis` in afterEach.
 */

export interface Ctx {
  id: string;
  an: string;
  pool: pg.Pool;
  redis: Redis;
  api: ApiService;
  url: string;
  logs: string[];
}

const open: Ctx[] = [];

/** Stops every API the test started and drops its schemas and keys. */
export async function stopApis(): Promise<void> {
  for (const c of open.splice(0)) {
    await c.api.stop();
    const keys = await c.redis.keys(`${c.id}*`);
    if (keys.length > 0) await c.redis.del(...keys);
    c.redis.disconnect();
    await c.pool.query(`DROP SCHEMA IF EXISTS ${c.id}_stg, ${c.id}_an, ${c.id}_meta CASCADE`);
    await c.pool.end();
  }
}

export async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** A logger whose every line is kept, at trace level, to check what the API logs. */
export function capturingLogger(lines: string[]): Logger {
  const sink = new Writable({ write(chunk, _enc, cb) { lines.push(String(chunk)); cb(); } });
  return pino({ level: 'trace' }, sink);
}

export async function setup(env: Record<string, string> = {}): Promise<Ctx> {
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

export interface Row {
  customer_id: string;
  total_orders?: number;
  total_items?: number;
  total_revenue?: string;
  avg_order_value?: string;
  first_order_date?: string;
  last_order_date?: string;
  version?: number;
}

export async function insertClv(c: Ctx, r: Row): Promise<void> {
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

export async function fillRedis(c: Ctx): Promise<void> {
  await rebuildRedisClv({ pool: c.pool, redis: c.redis, analyticsSchema: c.an, keyPrefix: `${c.id}:` });
}

export async function get(c: Ctx, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any; headers: Headers }> {
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

