import { readFileSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import type pg from 'pg';
import { REPO } from '../capture/harness.ts';
import { fullRefresh } from '../../consumers/warehouse/full-refresh.ts';
import { loadStackConfig } from '../../src/config/index.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { runVerify } from '../../src/rebuild/verify.ts';
import { createWarehousePool } from '../../src/sinks/postgres/pool.ts';
import { loadavg, log, median, round } from './pipeline.ts';
import { procCpuSeconds } from './cpu.ts';

/**
 * npx tsx bench/consumers/verify-scale.ts
 *
 * `verify` against the full refresh on the same staging, without the
 * pipeline: staging filled in SQL (BENCH_VERIFY_CUSTOMERS 25000, 4
 * orders each, 3 lines an order, 1000 products; every customer has 1–3
 * versions, every order 1–3 status changes), then per run (BENCH_RUNS, 3)
 * the full refresh and `verify` on it, each timed, with the CPU seconds
 * of the Postgres backend that ran each, and verify's time per derived
 * table (recomputation, comparison) and in the data checks. Results merge
 * into bench-results/consumers-verify.json (BENCH_OUT).
 *
 * BENCH_VERIFY_BASELINE=<dir>: also runs the `verify` of another checkout
 * (e.g. `git archive` of main into /tmp, node_modules linked) on the same
 * staging in each run, order alternating, so before and after are
 * measured in the same run.
 */
const customers = Number(process.env.BENCH_VERIFY_CUSTOMERS ?? 25_000);
const runs = Number(process.env.BENCH_RUNS ?? 3);
const out = `${REPO}/${process.env.BENCH_OUT ?? 'bench-results/consumers-verify.json'}`;
const id = `bcv_${Date.now().toString(36).slice(-5)}`;
const schemas = { staging: `${id}_stg`, analytics: `${id}_an`, meta: `${id}_wm` };
const baselineDir = process.env.BENCH_VERIFY_BASELINE;
const baselineVerify = baselineDir ? ((await import(`${baselineDir}/src/rebuild/verify.ts`)) as { runVerify: typeof runVerify }).runVerify : undefined;
const pool = createWarehousePool(loadStackConfig().warehouseUrl, 2);
const stg = `"${schemas.staging}"`;

async function backendCpu(c: { query: (s: string) => Promise<{ rows: Array<{ pid: number }> }> }): Promise<number> {
  const { rows } = await c.query('SELECT pg_backend_pid() AS pid');
  return procCpuSeconds(rows[0]!.pid) ?? Number.NaN;
}

try {
  await migrate(pool, 'warehouse', { schemas: warehouseSchemaNames(schemas) });
  const t = `'2024-01-01T00:00:00Z'::timestamptz`;
  await pool.query(`
    INSERT INTO ${stg}.stg_products (product_id, product_name, category, price, rating, updated_at, _source_lsn)
    SELECT p, 'p' || p, CASE WHEN p % 10 = 0 THEN NULL ELSE 'cat' || (p % 7) END, (p % 150) + 0.99, 4.5, ${t}, p FROM generate_series(1, 1000) p;
    INSERT INTO ${stg}.customer_changes (customer_id, lsn, seq, op, updated_at, committed_at, customer_segment, email_normalized, full_name)
    SELECT c, c * 10 + v, c * 10 + v, CASE WHEN v = 0 THEN 'c' ELSE 'u' END, ${t} + (c + v * 40000) * interval '1 minute', ${t} + (c + v * 40000) * interval '1 minute',
           (ARRAY['regular', 'gold', 'vip'])[1 + (v + c) % 3], 'c' || c || '@x', 'C ' || c
    FROM generate_series(1, ${customers}) c, generate_series(0, 2) v WHERE v <= c % 3;
    INSERT INTO ${stg}.stg_customers (customer_id, email, first_name, last_name, customer_segment, created_at, updated_at, email_normalized, full_name, _source_lsn)
    SELECT DISTINCT ON (customer_id) customer_id, email_normalized, 'C', customer_id::text AS ln, customer_segment, ${t}, updated_at, email_normalized, full_name, lsn
    FROM ${stg}.customer_changes ORDER BY customer_id, seq DESC;
    INSERT INTO ${stg}.order_status_changes (order_id, lsn, seq, op, status, updated_at, committed_at, order_date, customer_id)
    SELECT o, o * 10 + s, o * 10 + s, CASE WHEN s = 0 THEN 'c' ELSE 'u' END, (ARRAY['placed', 'shipped', 'delivered'])[1 + s],
           ${t} + o * interval '20 second' + s * interval '1 day', ${t} + o * interval '20 second' + s * interval '1 day', ${t} + o * interval '20 second', 1 + o % ${customers}
    FROM generate_series(1, ${customers * 4}) o, generate_series(0, 2) s WHERE s <= o % 3;
    INSERT INTO ${stg}.stg_orders (order_id, customer_id, order_date, status, updated_at, _source_lsn)
    SELECT DISTINCT ON (order_id) order_id, customer_id, order_date, status, updated_at, lsn FROM ${stg}.order_status_changes ORDER BY order_id, seq DESC;
    INSERT INTO ${stg}.stg_order_items (order_id, product_id, quantity, unit_price, discount, _source_lsn)
    SELECT o, 1 + (o * 7 + l * 13) % 1000, 1 + (o + l) % 4, ((o + l) % 150) + 0.99, CASE WHEN l = 0 THEN 0.1 ELSE 0 END, o * 10
    FROM generate_series(1, ${customers * 4}) o, generate_series(0, 2) l;
    ANALYZE ${stg}.stg_products, ${stg}.customer_changes, ${stg}.stg_customers, ${stg}.order_status_changes, ${stg}.stg_orders, ${stg}.stg_order_items;`);
  const lines = Number((await pool.query(`SELECT count(*) AS n FROM ${stg}.stg_order_items`)).rows[0].n);
  log(`verify-scale: staging filled, ${customers} customers, ${customers * 4} orders, ${lines} lines`);
  const results = [];
  type Verify = typeof runVerify;
  async function timedVerify(c: pg.PoolClient, fn: Verify) {
    const cpu0 = await backendCpu(c);
    const t0 = Date.now();
    const report = await fn(c, schemas);
    const seconds = (Date.now() - t0) / 1000;
    const cpu = round((await backendCpu(c)) - cpu0, 2);
    if (!report.ok) throw new Error(`verify found differences: ${JSON.stringify(report.recompute.filter((d) => d.missing || d.unexpected))}`);
    const tables = Object.fromEntries(report.recompute.map((d) => [d.table, d.ms ?? null]));
    const checksSeconds = round(report.checks.reduce((a, x) => a + (x.ms ?? 0), 0) / 1000, 2);
    return { seconds: round(seconds, 2), backendCpuSeconds: cpu, tablesMs: tables, checksSeconds };
  }
  for (let r = 0; r < runs; r++) {
    const loadBefore = loadavg();
    const c = await pool.connect();
    try {
      // The pool holds two connections and verify's is taken: the full refresh runs on the other.
      const other = await pool.connect();
      const refreshPid = (await other.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      other.release();
      const rcpu0 = procCpuSeconds(refreshPid) ?? Number.NaN;
      const refresh = await fullRefresh(pool, schemas, { redisKeyPrefix: `${id}:` });
      const refreshCpu = round((procCpuSeconds(refreshPid) ?? Number.NaN) - rcpu0, 2);
      const refreshS = refresh.ms / 1000;
      let baseline: Awaited<ReturnType<typeof timedVerify>> | undefined;
      if (baselineVerify && r % 2 === 1) baseline = await timedVerify(c, baselineVerify);
      const v = await timedVerify(c, runVerify);
      if (baselineVerify && r % 2 === 0) baseline = await timedVerify(c, baselineVerify);
      const run = {
        run: r + 1, loadavgBefore: loadBefore, loadavgAfter: loadavg(),
        fullRefreshSeconds: round(refreshS, 2), fullRefreshBackendCpuSeconds: refreshCpu,
        verifySeconds: v.seconds, ratio: round(v.seconds / refreshS, 2), verifyBackendCpuSeconds: v.backendCpuSeconds,
        verifyTablesMs: v.tablesMs, verifyChecksSeconds: v.checksSeconds,
        ...(baseline ? { baselineVerifySeconds: baseline.seconds, baselineRatio: round(baseline.seconds / refreshS, 2), baselineVerifyBackendCpuSeconds: baseline.backendCpuSeconds } : {}),
      };
      log(`verify-scale run ${r + 1}: ${JSON.stringify(run)}`);
      results.push(run);
    } finally {
      c.release();
    }
  }
  const res = {
    date: new Date().toISOString(), customers, orders: customers * 4, lines,
    method: 'staging filled in SQL; per run the full refresh (its own transaction), then verify (REPEATABLE READ, read only) on its result; wall times; backend CPU from /proc'
      + (baselineDir ? `; baseline verify from ${baselineDir} in the same runs, order alternating` : ''),
    runs: results,
    median: { fullRefreshSeconds: median(results.map((x) => x.fullRefreshSeconds)), verifySeconds: median(results.map((x) => x.verifySeconds)), ratio: median(results.map((x) => x.ratio)),
      verifyBackendCpuSeconds: median(results.map((x) => x.verifyBackendCpuSeconds)), fullRefreshBackendCpuSeconds: median(results.map((x) => x.fullRefreshBackendCpuSeconds)),
      ...(baselineDir ? { baselineVerifySeconds: median(results.map((x) => x.baselineVerifySeconds ?? Number.NaN)), baselineRatio: median(results.map((x) => x.baselineRatio ?? Number.NaN)) } : {}) },
  };
  const prev = existsSync(out) ? JSON.parse(readFileSync(out, 'utf8')) : {};
  mkdirSync(`${REPO}/bench-results`, { recursive: true });
  writeFileSync(out, `${JSON.stringify({ ...prev, [String(customers)]: res }, null, 2)}\n`);
  log(`verify-scale median: full refresh ${res.median.fullRefreshSeconds} s, verify ${res.median.verifySeconds} s, ratio ${res.median.ratio}`);
} finally {
  await pool.query(`DROP SCHEMA IF EXISTS "${schemas.staging}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.analytics}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.meta}" CASCADE`).catch(() => {});
  await pool.end();
}
