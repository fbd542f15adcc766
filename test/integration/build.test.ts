import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import kafkajs from 'kafkajs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * The production build (`npm run build` → dist/) runs under plain node, no
 * tsx: the capture, the warehouse consumer and the API started from
 * dist/src/cli/shopstream.js carry one order from the source to the CLV
 * endpoint, then stop cleanly on SIGTERM.
 */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = `${ROOT}dist/src/cli/shopstream.js`;
const id = uniqueId('build');
const wh = { STAGING_SCHEMA: `${id}_stg`, ANALYTICS_SCHEMA: `${id}_an`, META_SCHEMA: `${id}_meta` };
// Plain node: no loader inherited from the test runner's environment.
const { NODE_OPTIONS: _nodeOptions, ...baseEnv } = process.env;
const env: Record<string, string | undefined> = {
  ...baseEnv, LOG_LEVEL: 'info', SOURCE_DATABASE_URL: stackEnv.sourceUrl, WAREHOUSE_DATABASE_URL: stackEnv.warehouseUrl,
  KAFKA_BROKERS: stackEnv.kafkaBrokers.join(','), SCHEMA_REGISTRY_URL: stackEnv.registryUrl, REDIS_URL: stackEnv.redisUrl,
  TOPIC_PREFIX: id, SOURCE_SCHEMA: id, CAPTURE_SCHEMAS: id, CAPTURE_SLOT: id, CAPTURE_PUBLICATION: id, CAPTURE_META_SCHEMA: `${id}_cmeta`,
  CAPTURE_METRICS_PORT: '-1', CONSUMER_HEALTH_PORT: '0', CLICKSTREAM_HEALTH_PORT: '0', CONSUMER_GROUP: id, CONSUMER_TOPIC_WAIT_MS: '60000', REDIS_KEY_PREFIX: `${id}:`, API_PORT: '0', ...wh,
};

interface Proc { child: ChildProcess; lines: Array<Record<string, unknown>>; stderr: string }
const procs: Proc[] = [];

function start(args: string[]): Proc {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const p: Proc = { child, lines: [], stderr: '' };
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    for (const l of parts) {
      try {
        p.lines.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        p.lines.push({ msg: l });
      }
    }
  });
  child.stderr!.on('data', (d: Buffer) => (p.stderr += d.toString()));
  procs.push(p);
  return p;
}

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const ready = (p: Proc, name: string) => until(`${name} ready`, () => {
  if (p.child.exitCode !== null) throw new Error(`${name} exited ${p.child.exitCode}: ${p.stderr}`);
  return p.lines.some((l) => l.msg === 'ready') ? true : undefined;
});

function stop(p: Proc): Promise<number | null> {
  return new Promise((resolve) => {
    if (p.child.exitCode !== null) return resolve(p.child.exitCode);
    p.child.once('exit', (code) => resolve(code));
    p.child.kill('SIGTERM');
  });
}

let source: pg.Pool;
let warehouse: pg.Pool;

beforeAll(async () => {
  await new Promise<void>((resolve, reject) => execFile(process.execPath, [`${ROOT}scripts/build.mjs`], { cwd: ROOT, timeout: 280_000 },
    (err, _out, stderr) => (err ? reject(new Error(`build failed: ${stderr}`)) : resolve())));
  source = new pg.Pool({ connectionString: stackEnv.sourceUrl, max: 2 });
  warehouse = new pg.Pool({ connectionString: stackEnv.warehouseUrl, max: 2 });
}, 300_000);

afterAll(async () => {
  for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
  if (!source) return;
  for (let i = 0; i < 40; i++) {
    const { rows } = await source.query('SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1', [id]);
    if (rows.length === 0) break;
    if (rows[0].active_pid === null) {
      await source.query('SELECT pg_drop_replication_slot($1)', [id]);
      break;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  await source.query(`DROP PUBLICATION IF EXISTS ${id}`);
  await source.query(`DROP SCHEMA IF EXISTS ${id} CASCADE; DROP SCHEMA IF EXISTS ${id}_cmeta CASCADE; DROP SCHEMA IF EXISTS ${id}_meta CASCADE`);
  await warehouse.query(`DROP SCHEMA IF EXISTS ${wh.STAGING_SCHEMA} CASCADE; DROP SCHEMA IF EXISTS ${wh.ANALYTICS_SCHEMA} CASCADE; DROP SCHEMA IF EXISTS ${wh.META_SCHEMA} CASCADE`);
  await Promise.all([source.end(), warehouse.end()]);
  const kafka = new kafkajs.Kafka({ clientId: 'test-build-cleanup', brokers: stackEnv.kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const topics = (await admin.listTopics()).filter((t) => t.startsWith(`${id}.`));
  if (topics.length) await admin.deleteTopics({ topics }).catch(() => {});
  await admin.deleteGroups([id]).catch(() => {});
  await admin.disconnect();
  const redis = new Redis(stackEnv.redisUrl);
  const keys = await redis.keys(`${id}:*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
  for (const t of ['customers', 'products', 'orders', 'order_items']) {
    for (const s of ['key', 'value']) {
      const subject = `${stackEnv.registryUrl}/subjects/${encodeURIComponent(`${id}.${id}.${t}-${s}`)}`;
      await fetch(subject, { method: 'DELETE' }).then(() => fetch(`${subject}?permanent=true`, { method: 'DELETE' })).catch(() => {});
    }
  }
});

describe('production build', () => {
  it('emits JavaScript only, with the run-time assets beside it', () => {
    for (const f of ['src/cli/shopstream.js', 'consumers/warehouse/main.js', 'src/api/main.js', 'src/sinks/redis/clv-write.lua', 'src/api/status/page-script.js', 'migrations/warehouse/0050_mart_sales_null_category.sql', 'schemas/clickstream-event.avsc']) {
      expect(existsSync(`${ROOT}dist/${f}`), f).toBe(true);
    }
  });

  it('runs capture, warehouse consumer and API under plain node: an order reaches the CLV endpoint, and all stop cleanly', async () => {
    const migrated = start(['migrate', 'source', '--source-schema', id, '--publication', id, '--meta', `${id}_cmeta`]);
    expect(await stop_when_exited(migrated), migrated.stderr).toBe(0);

    const capture = start(['capture']);
    const consumer = start(['consume', 'warehouse']);
    const api = start(['api']);
    await Promise.all([ready(capture, 'capture'), ready(consumer, 'consumer'), ready(api, 'api')]);
    const url = api.lines.find((l) => l.msg === 'listening')!.url as string;

    await source.query(`INSERT INTO ${id}.customers (customer_id, email, first_name, last_name, customer_segment) VALUES (7, 'a@x.io', 'A', 'B', 'gold');
      INSERT INTO ${id}.products (product_id, product_name, category, price) VALUES (70, 'Thing', NULL, 12.50);
      INSERT INTO ${id}.orders (order_id, customer_id, order_date, status) VALUES (700, 7, now(), 'placed');
      INSERT INTO ${id}.order_items (order_id, product_id, quantity, unit_price, discount) VALUES (700, 70, 2, 12.50, 0)`);
    const clv = await until('the CLV of customer 7', async () => {
      const res = await fetch(`${url}/customers/7/clv`);
      return res.status === 200 ? (await res.json()) as Record<string, unknown> : undefined;
    });
    expect(clv).toMatchObject({ customer_id: '7', total_orders: 1, total_revenue: '25.00' });
    const { rows: mart } = await warehouse.query(`SELECT category, revenue FROM ${wh.ANALYTICS_SCHEMA}.mart_sales`);
    expect(mart).toEqual([{ category: null, revenue: '25.00' }]);
    // The status page's script and uPlot (from node_modules) are found by the built API too.
    for (const [asset, type, marker] of [['page.js', 'text/javascript', 'statusPage'], ['uplot.iife.min.js', 'text/javascript', 'uPlot'], ['uplot.min.css', 'text/css', '.uplot']] as const) {
      const res = await fetch(`${url}/status/${asset}`);
      expect(res.status, asset).toBe(200);
      expect(res.headers.get('content-type'), asset).toContain(type);
      expect(await res.text(), asset).toContain(marker);
    }
    expect(await (await fetch(`${url}/status`)).text()).toContain('<script src="/status/page.js">');

    // Shutdown drains in reverse start order and exits 0.
    expect(await Promise.all([stop(api), stop(consumer), stop(capture)])).toEqual([0, 0, 0]);
  }, 240_000);
});

function stop_when_exited(p: Proc): Promise<number | null> {
  return new Promise((resolve) => (p.child.exitCode !== null ? resolve(p.child.exitCode) : p.child.once('exit', (code) => resolve(code))));
}
