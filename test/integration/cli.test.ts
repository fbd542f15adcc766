import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/run-cli.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * `shopstream` subcommands run for real against the stack, each in schemas
 * of its own: migrate (source and warehouse), generate, verify, snapshot.
 */
const id = uniqueId('cli');
const src = `${id}_src`;
const wh = { staging: `${id}_stg`, analytics: `${id}_an`, meta: `${id}_meta` };
const env = {
  ...process.env, LOG_LEVEL: 'warn', SOURCE_DATABASE_URL: stackEnv.sourceUrl, WAREHOUSE_DATABASE_URL: stackEnv.warehouseUrl,
  STAGING_SCHEMA: wh.staging, ANALYTICS_SCHEMA: wh.analytics, META_SCHEMA: wh.meta,
};
let source: pg.Pool;
let warehouse: pg.Pool;

const cli = (args: string[], extraEnv: Record<string, string> = {}) => runCli(args, { ...env, ...extraEnv });

beforeAll(() => {
  source = new pg.Pool({ connectionString: stackEnv.sourceUrl, max: 2 });
  warehouse = new pg.Pool({ connectionString: stackEnv.warehouseUrl, max: 2 });
});
afterAll(async () => {
  await source?.query(`DROP PUBLICATION IF EXISTS ${src}_pub`).catch(() => {});
  await source?.query(`DROP SCHEMA IF EXISTS ${src} CASCADE; DROP SCHEMA IF EXISTS ${wh.meta} CASCADE`);
  await warehouse?.query(`DROP SCHEMA IF EXISTS ${wh.staging} CASCADE; DROP SCHEMA IF EXISTS ${wh.analytics} CASCADE; DROP SCHEMA IF EXISTS ${wh.meta} CASCADE`);
  await Promise.all([source?.end(), warehouse?.end()]);
});

describe('shopstream against the stack', () => {
  it('migrate builds the source and the warehouse in the schemas named by flags, once', async () => {
    const flags = ['--source-schema', src, '--publication', `${src}_pub`, '--staging', wh.staging, '--analytics', wh.analytics, '--meta', wh.meta];
    const first = await cli(['migrate', 'all', ...flags]);
    expect(first.code, first.stderr).toBe(0);
    const { rows: [products] } = await source.query(
      `SELECT is_nullable FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'products' AND column_name = 'category'`, [src]);
    expect(products).toEqual({ is_nullable: 'YES' });
    const { rows: ledger } = await warehouse.query(`SELECT version FROM ${wh.meta}.schema_migrations WHERE migration_set = 'warehouse' ORDER BY version`);
    expect(ledger.map((r) => r.version)).toContain(50);
    const { rows: [key] } = await warehouse.query(
      `SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = '${wh.analytics}.mart_sales'::regclass AND contype = 'u'`);
    expect(key.def).toBe('UNIQUE NULLS NOT DISTINCT (date_key, category)');
    const again = await cli(['migrate', 'warehouse', ...flags]);
    expect(again.code, again.stderr).toBe(0);
    const { rows: [{ n }] } = await warehouse.query(`SELECT count(*)::int AS n FROM ${wh.meta}.schema_migrations`);
    expect(n).toBe(ledger.length);
  });

  it('generate writes a catalogue with uncategorised products and orders into its source schema', async () => {
    const r = await cli(['generate', '--source-schema', src, '--customers', '20', '--products', '40', '--orders', '30', '--seed', '5']);
    expect(r.code, r.stderr).toBe(0);
    const { rows: [c] } = await source.query(
      `SELECT (SELECT count(*)::int FROM ${src}.customers) AS customers, (SELECT count(*)::int FROM ${src}.products) AS products,
              (SELECT count(*)::int FROM ${src}.orders) AS orders, (SELECT count(*)::int FROM ${src}.order_items) > 0 AS lines,
              (SELECT array_agg(product_id::int ORDER BY product_id) FROM ${src}.products WHERE category IS NULL) AS uncategorised`);
    // Orders bring a few sign-ups of their own (the generator's side effects).
    expect(c.customers).toBeGreaterThanOrEqual(20);
    expect(c).toMatchObject({ products: 40, orders: 30, lines: true, uncategorised: [20, 40] });
  });

  it('verify exits 0 on a consistent warehouse and 1 naming the table when a mart cell is wrong', async () => {
    const ok = await cli(['verify', '--json']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ ok: true, schemas: wh });
    // Progress on stderr as plain lines (not a terminal), stdout the JSON alone.
    expect(ok.stderr).toMatch(/^verify: \d+\/\d+ comparisons and checks \(\d+%\), \d+\/s, ETA /m);
    expect(ok.stderr).toMatch(/^verify: clean: (\d+)\/\1 comparisons and checks in /m);
    await warehouse.query(`INSERT INTO ${wh.analytics}.mart_sales VALUES (20240101, NULL, 1, 1, 9.99)`);
    const bad = await cli(['verify', '--staging', wh.staging, '--analytics', wh.analytics]);
    expect(bad.code, bad.stderr).toBe(1);
    expect(bad.stdout).toMatch(/mart_sales/);
    expect(bad.stdout).toContain('20240101');
    expect(bad.stderr).toMatch(/^verify: differences found: /m);
  });

  it('snapshot writes the re-snapshot request into the WAL for the running capture, table alone or schema.table', async () => {
    const conn = new pg.Client({ connectionString: stackEnv.sourceUrl });
    await conn.connect();
    const slot = `${id}_slot`;
    try {
      // A temporary slot: dropped with this session whatever happens.
      await conn.query(`SELECT pg_create_logical_replication_slot($1, 'test_decoding', true)`, [slot]);
      const qualified = await cli(['snapshot', `${src}.products`]);
      expect(qualified.code, qualified.stderr).toBe(0);
      expect(qualified.stdout).toMatch(new RegExp(`re-snapshot of ${src}\\.products requested at [0-9A-F]+/[0-9A-F]+`));
      const bare = await cli(['snapshot', 'orders'], { CAPTURE_SCHEMAS: src });
      expect(bare.code, bare.stderr).toBe(0);
      // Other processes write to the same WAL: only this test's requests count.
      const { rows } = await conn.query<{ data: string }>(
        `SELECT data FROM pg_logical_slot_peek_changes($1, NULL, NULL) WHERE data LIKE 'message:%prefix: shopstream.snapshot%' AND data LIKE $2`, [slot, `%content:${src}.%`]);
      expect(rows.map((r) => r.data.replace(/.*content:/, ''))).toEqual([`${src}.products`, `${src}.orders`]);
      expect(rows.every((r) => r.data.startsWith('message: transactional: 1'))).toBe(true);
      const refused = await cli(['snapshot', 'Not A Table']);
      expect(refused.code).toBe(2);
    } finally {
      await conn.end();
    }
  });
});
