import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHarness, waitFor, type Harness } from '../../bench/capture/harness.ts';
import type { PipelineStatus } from '../../src/health/status-collect.ts';
import { TrafficGenerator } from '../../src/generator/writer.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { createWarehousePool, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { dropTestWarehouse } from '../helpers/pipeline-cleanup.ts';
import { runCli } from '../helpers/run-cli.ts';
import { healthListening, spawnCli, type CliProcess } from '../helpers/spawn-cli.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * The `shopstream` commands test/integration/cli.test.ts does not run, each
 * once for real against the stack, in a slot, topic prefix, schemas,
 * registry schema and Redis prefix of this file's own: the long-running
 * ones (capture, consume warehouse, consume clickstream, api, registry)
 * start, become ready on /readyz and stop cleanly (exit 0) on SIGTERM;
 * status, redis rebuild and replay (a rewind) run while they do; demo stop
 * stops a process the way the demo's pidfiles name it.
 */
const id = uniqueId('clirun');
const schemas: WarehouseSchemas = { staging: `${id}_stg`, analytics: `${id}_an`, meta: `${id}_wmeta` };
const group = `${id}_wh`;
let h: Harness;
let wh: pg.Pool;
let env: NodeJS.ProcessEnv;
let stateDir: string;
const redis = new Redis(stackEnv.redisUrl, { maxRetriesPerRequest: 1 });
const procs: Record<string, CliProcess> = {};
const urls: Record<string, string> = {};

const ready = async (name: string, base: string) =>
  waitFor(`${name} ready`, async () => (await fetch(`${base}/readyz`).catch(() => null))?.status === 200, 90_000);

beforeAll(async () => {
  h = await createHarness(id);
  wh = createWarehousePool(stackEnv.warehouseUrl, 3);
  await migrate(wh, 'warehouse', { schemas: warehouseSchemaNames(schemas) });
  stateDir = await mkdtemp(path.join(tmpdir(), 'cli-runs-'));
  env = {
    ...process.env, ...h.env,
    WAREHOUSE_DATABASE_URL: stackEnv.warehouseUrl, KAFKA_BROKERS: stackEnv.kafkaBrokers.join(','), SCHEMA_REGISTRY_URL: stackEnv.registryUrl, REDIS_URL: stackEnv.redisUrl,
    SOURCE_SCHEMA: id, CONSUMER_GROUP: group, CLICKSTREAM_GROUP: `${id}_click`, CLICKSTREAM_TOPIC: `${id}.clickstream`,
    STAGING_SCHEMA: schemas.staging, ANALYTICS_SCHEMA: schemas.analytics, META_SCHEMA: schemas.meta, REDIS_KEY_PREFIX: `${id}:`,
    CAPTURE_METRICS_PORT: '0', CONSUMER_HEALTH_PORT: '0', CLICKSTREAM_HEALTH_PORT: '0', API_PORT: '0', REGISTRY_PORT: '0',
    REGISTRY_SCHEMA: `${id}_registry`, CAPTURE_SNAPSHOT: 'initial', LOG_LEVEL: 'info', STATUS_PAGE: 'false',
    CONSUMER_TOPIC_WAIT_MS: '3000', CONSUMER_SESSION_TIMEOUT_MS: '6000',
  };
  const gen = new TrafficGenerator(h.pool, { schema: id, seed: 21 });
  await gen.seedCatalog(25, 10);
  await gen.placeOrders(15, 1);
}, 120_000);

afterAll(async () => {
  for (const p of Object.values(procs)) await p.stop();
  await h?.cleanup();
  await dropTestWarehouse(wh, schemas, redis, id);
  await wh?.end();
  const reg = new (await import('pg')).default.Pool({ connectionString: stackEnv.registryDatabaseUrl, max: 1 });
  await reg.query(`DROP SCHEMA IF EXISTS "${id}_registry" CASCADE`).finally(() => reg.end());
  redis.disconnect();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

describe('shopstream long-running commands and tools against the stack', () => {
  it('capture, consume warehouse, consume clickstream, api and registry start and answer /readyz', async () => {
    procs.capture = spawnCli(['capture'], env);
    procs.consumers = spawnCli(['consume', 'warehouse'], env);
    procs.clickstream = spawnCli(['consume', 'clickstream'], env);
    procs.api = spawnCli(['api'], env);
    procs.registry = spawnCli(['registry'], env);
    const port = async (name: string) => `http://127.0.0.1:${(await procs[name]!.waitForLog(healthListening, 'health listening', 90_000)).port as number}`;
    const listening = async (name: string) => (await procs[name]!.waitForLog((j) => j.msg === 'listening' && typeof j.url === 'string', 'listening', 90_000)).url as string;
    [urls.capture, urls.consumers, urls.clickstream, urls.api, urls.registry] = await Promise.all([
      port('capture'), port('consumers'), port('clickstream'), listening('api'), listening('registry'),
    ]);
    await Promise.all(Object.entries(urls).map(([name, base]) => ready(name, base)));
    // Our registry answers the Confluent API from its own schema.
    expect(await (await fetch(`${urls.registry}/subjects`)).json()).toEqual([]);
    await waitFor('CLV rows from the pipeline', async () => Number((await wh.query(`SELECT count(*) AS n FROM "${schemas.analytics}".customer_lifetime_value`)).rows[0].n) > 0, 90_000);
  }, 180_000);

  it('status --json sees all five processes ready and the group caught up', async () => {
    const pidDir = path.join(stateDir, 'app');
    await mkdir(pidDir, { recursive: true });
    for (const [name, p] of Object.entries(procs)) if (name !== 'registry') await writeFile(path.join(pidDir, `${name}.pid`), `${p.proc.pid}\n`);
    const statusEnv = {
      ...env, STATUS_CAPTURE_URL: urls.capture, STATUS_CONSUMERS_URL: urls.consumers, STATUS_CLICKSTREAM_URL: urls.clickstream,
      STATUS_API_URL: urls.api, STATUS_REGISTRY_URL: urls.registry,
    };
    const js = await waitFor('group caught up in status', async () => {
      const r = await runCli(['status', '--json', '--pid-dir', pidDir], statusEnv);
      const s = JSON.parse(r.stdout) as PipelineStatus;
      return r.code === 0 && s.groups.find((g) => g.group === group)?.lag === '0' ? s : null;
    }, 60_000);
    expect(js.processes.map((p) => [p.name, p.state])).toEqual([['capture', 'ok'], ['consumers', 'ok'], ['clickstream', 'ok'], ['api', 'ok'], ['registry', 'ok']]);
    expect(js.processes.find((p) => p.name === 'consumers')!.pid).toBe(procs.consumers!.proc.pid);
    expect(js.processes.find((p) => p.name === 'registry')!.pid).toBe(procs.registry!.proc.pid);
    expect(js.slot).toMatchObject({ name: id, state: 'ok', active: true });
  }, 90_000);

  it('snapshot --wait follows the re-snapshot through the running capture to its end, progress as plain lines', async () => {
    const table = `${id}.products`;
    const r = await runCli(['snapshot', table, '--wait', '--timeout', '90'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^re-snapshot of ${id}\\.products requested at [0-9A-F]+/[0-9A-F]+$`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^re-snapshot of ${id}\\.products done in [\\d.]+ s$`, 'm'));
    expect(r.stderr).toMatch(new RegExp(`^snapshot ${id}\\.products: \\d+/\\d+ rows \\(\\d+%\\), \\d+/s, ETA `, 'm'));
    expect(r.stderr).toMatch(new RegExp(`^snapshot ${id}\\.products: done .*: 10/10 rows in `, 'm'));
    // The wait ended because the capture finished it.
    await procs.capture!.waitForLog((j) => j.msg === 're-snapshot done' && j.table === table, 're-snapshot done', 10_000);
  }, 120_000);

  it('redis rebuild refills the CLV hashes of this prefix from Postgres, progress as plain lines off a terminal', async () => {
    const { rows: [{ n }] } = await wh.query(`SELECT count(*)::int AS n FROM "${schemas.analytics}".customer_lifetime_value`);
    const keys = await redis.keys(`${id}:clv:*`);
    await redis.del(...keys);
    const r = await runCli(['redis', 'rebuild', '--page-size', '7'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`redis:rebuild done in [\\d.]+ s: rows ${n}/${n} \\(100%\\), written ${n}`));
    expect(r.stderr).toMatch(new RegExp(`^redis rebuild: refill: \\d+/${n} rows \\(\\d+%\\), \\d+/s, ETA `, 'm'));
    expect(r.stderr).toMatch(new RegExp(`^redis rebuild: refill: ${n} written, 0 unchanged or newer in Redis: ${n}/${n} rows in `, 'm'));
    expect(r.stderr).not.toContain('\r');
    expect((await redis.keys(`${id}:clv:*`)).length).toBe(n);
  }, 60_000);

  it('replay --rewind moves the group back to the log start; the running consumer re-applies to the same tables', async () => {
    const fact = async () => (await wh.query(`SELECT count(*)::int AS n, coalesce(sum(line_total), 0)::text AS total FROM "${schemas.analytics}".fact_orders`)).rows[0];
    const before = await fact();
    const applied = async () => Number((await wh.query(`SELECT coalesce(sum(next_offset), 0) AS n FROM "${schemas.meta}".consumer_offsets WHERE consumer_group = $1`, [group])).rows[0].n);
    const atEnd = await applied();
    const r = await runCli(['replay', '--group', group, '--rewind', '--to-offset', 'earliest', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { group: string; moved: unknown[]; messages: number };
    expect(out.group).toBe(group);
    expect(out.moved.length).toBeGreaterThan(0);
    expect(out.messages).toBe(atEnd);
    await waitFor('re-applied to the end', async () => (await applied()) === atEnd, 60_000);
    expect(await fact()).toEqual(before);
  }, 90_000);

  it('demo stop stops the processes its pidfiles name, each cleanly (exit 0); the registry stops on SIGTERM', async () => {
    // On a state dir of this test's own (STACK_STATE), holding the pidfiles the status run wrote.
    const names = ['api', 'clickstream', 'consumers', 'capture'];
    const exits = names.map((n) => procs[n]!.exited);
    const demo = await runCli(['demo', 'stop'], { ...env, STACK_STATE: stateDir });
    expect(demo.code, demo.stderr).toBe(0);
    expect(demo.stdout.trim().split('\n')).toEqual(names.map((n) => `stopped ${n}`));
    for (const [i, n] of names.entries()) {
      expect(await exits[i], `${n}: ${procs[n]!.lines.slice(-5).join('\n')}`).toEqual({ code: 0, signal: null });
      // A drained stop: the signal was seen and every service stopped.
      expect(procs[n]!.lines.some((l) => l.includes('"msg":"shutting down"'))).toBe(true);
      expect(procs[n]!.lines.some((l) => l.includes('"msg":"stopping"'))).toBe(true);
      expect(existsSync(path.join(stateDir, 'app', `${n}.pid`))).toBe(false);
      delete procs[n];
    }
    const reg = procs.registry!;
    expect(await reg.stop(30_000), reg.lines.slice(-5).join('\n')).toEqual({ code: 0, signal: null });
    expect(reg.lines.some((l) => l.includes('"msg":"shutting down"'))).toBe(true);
    delete procs.registry;
  }, 120_000);
});
