import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import kafkajs from 'kafkajs';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createHarness, waitFor, type Harness } from '../../bench/capture/harness.ts';
import { runStatus } from '../../src/cli/status.ts';
import { groupLag } from '../../src/consumer/lag.ts';
import { TABLE_NAMES } from '../../src/consumer/tables.ts';
import type { PipelineStatus } from '../../src/health/status-collect.ts';
import { TrafficGenerator } from '../../src/generator/writer.ts';
import type { WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { createTestWarehouse, dropTestWarehouse } from '../helpers/pipeline-cleanup.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * Issue 10, observability: the capture and the warehouse consumer run as
 * child processes (own slot, topic prefix, group, schemas, ports picked by
 * the OS). Both serve /healthz, /readyz and /metrics; `status` shows them
 * healthy with the group's lag, the slot and the outbox. Then the consumer
 * is stalled on purpose — a test connection holds the warehouse namespace
 * lock every batch transaction takes while changes wait in its topics —
 * and its /readyz turns 503 with the watchdog's reason, `status` exits 1,
 * and the process exits non-zero at WATCHDOG_EXIT_MS.
 */
const REPO = fileURLToPath(new URL('../..', import.meta.url));

interface Child { proc: ChildProcess; port: Promise<number>; lines: string[] }

function spawnLogged(script: string, env: NodeJS.ProcessEnv): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', script], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const port = new Promise<number>((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout! });
    rl.on('line', (l) => {
      lines.push(l);
      if (lines.length > 2000) lines.shift();
      try {
        const j = JSON.parse(l) as { msg?: string; port?: number };
        if (j.msg === 'health listening' && typeof j.port === 'number') resolve(j.port);
      } catch { /* not JSON */ }
    });
    proc.once('exit', (code) => reject(new Error(`${script} exited (${code}) before listening:\n${lines.slice(-20).join('\n')}`)));
  });
  port.catch(() => {});
  proc.stderr!.on('data', (d: Buffer) => lines.push(d.toString()));
  return { proc, port, lines };
}

const exited = (c: ChildProcess) => new Promise<number | null>((r) => (c.exitCode !== null || c.signalCode !== null ? r(c.exitCode) : c.once('exit', (code) => r(code))));

async function get(port: number, p: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${p}`);
  return { status: res.status, text: await res.text() };
}

/** The value of one Prometheus sample line (`name{labels} value`), summed over matching lines. */
function metric(text: string, name: string, labels: Record<string, string> = {}): number | null {
  let sum: number | null = null;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum = (sum ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

describe('health, metrics, status and the watchdog against real processes', () => {
  let h: Harness | undefined;
  let wh: pg.Pool | undefined;
  let schemas: WarehouseSchemas | undefined;
  let capture: Child | undefined;
  let consumer: Child | undefined;
  let locker: pg.Client | undefined;
  let pidDir: string | undefined;
  const redis = new Redis(stackEnv.redisUrl, { maxRetriesPerRequest: 1 });

  afterAll(async () => {
    await locker?.end().catch(() => {});
    for (const c of [consumer, capture]) {
      if (c && c.proc.exitCode === null && c.proc.signalCode === null) {
        c.proc.kill('SIGTERM');
        await Promise.race([exited(c.proc), new Promise((r) => setTimeout(r, 15_000))]);
        if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
      }
    }
    await h?.cleanup();
    await dropTestWarehouse(wh, schemas, redis, h?.id);
    await wh?.end();
    redis.disconnect();
    if (pidDir) await rm(pidDir, { recursive: true, force: true });
  });

  it('reports healthy, then a stalled consumer unhealthy on /readyz and in status, then the consumer exits non-zero', async () => {
    h = await createHarness(uniqueId('health'));
    const s = h.id;
    const tw = await createTestWarehouse(s);
    ({ schemas, pool: wh } = tw);
    const group = tw.group;
    const topics = TABLE_NAMES.map((t) => h!.topic(t));
    const env: NodeJS.ProcessEnv = {
      ...process.env, ...h.env,
      ...tw.env, CLICKSTREAM_GROUP: `${s}_click`, CLICKSTREAM_TOPIC: `${s}.clickstream`,
      CAPTURE_METRICS_PORT: '0', CONSUMER_HEALTH_PORT: '0', CAPTURE_SNAPSHOT: 'initial', LOG_LEVEL: 'info',
      CONSUMER_TOPIC_WAIT_MS: '3000', CONSUMER_SESSION_TIMEOUT_MS: '6000',
    };
    const gen = new TrafficGenerator(h.pool, { schema: s, seed: 7 });
    await gen.seedCatalog(30, 10);
    capture = spawnLogged('src/cli/capture.ts', env);
    // Small limits for the consumer only: the capture keeps the defaults.
    consumer = spawnLogged('consumers/warehouse/main.ts', { ...env, WATCHDOG_UNHEALTHY_MS: '3000', WATCHDOG_EXIT_MS: '15000', WATCHDOG_INTERVAL_MS: '500' });
    const [capturePort, consumerPort] = await Promise.all([capture.port, consumer.port]);
    expect((await get(consumerPort, '/healthz')).status).toBe(200);
    // The capture listens before it has a slot: orders committed before the slot's snapshot would be
    // captured as snapshot reads, which have no commit -> ack latency; ready means streaming.
    await waitFor('capture ready', async () => (await get(capturePort, '/readyz')).status === 200, 60_000);

    await gen.placeOrders(10, 2);
    const kafka = new kafkajs.Kafka({ clientId: 'health-test', brokers: stackEnv.kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    try {
      const applied = async () => Number((await wh!.query(`SELECT coalesce(sum(next_offset), 0) AS n FROM "${schemas!.meta}".consumer_offsets WHERE consumer_group = $1`, [group])).rows[0].n);
      await waitFor('consumer caught up', async () => (await applied()) > 0 && (await groupLag(admin, wh!, schemas!, group, topics)) === 0, 90_000);
      await waitFor('consumer ready', async () => (await get(consumerPort, '/readyz')).status === 200, 30_000);

      // Metrics of both processes, in Prometheus text.
      await waitFor('consumer gauges refreshed', async () => metric((await get(consumerPort, '/metrics')).text, 'consumer_lag_messages', { group }) === 0, 10_000);
      const cm = (await get(consumerPort, '/metrics')).text;
      expect(metric(cm, 'consumer_messages_applied_total', { group })).toBe(await applied());
      expect(metric(cm, 'consumer_batch_apply_seconds_count', { group })).toBeGreaterThan(0);
      const fresh = metric(cm, 'consumer_freshness_seconds', { group, topic: h.topic('orders') });
      expect(fresh).not.toBeNull();
      expect(fresh!).toBeGreaterThanOrEqual(0);
      expect(fresh!).toBeLessThan(600);
      expect(metric(cm, 'consumer_redis_outbox_depth', { group })).not.toBeNull();
      expect(metric(cm, 'health_ready')).toBe(1);
      expect(cm).toMatch(/# TYPE consumer_batch_apply_seconds histogram/);
      await waitFor('capture slot gauges', async () => (metric((await get(capturePort, '/metrics')).text, 'capture_slot_wal_retained_bytes') ?? 0) > 0, 15_000);
      const capm = (await get(capturePort, '/metrics')).text;
      expect(metric(capm, 'capture_events_total')).toBeGreaterThan(0);
      expect(metric(capm, 'capture_commit_to_ack_seconds_count')).toBeGreaterThan(0);
      expect(capm).toMatch(/^capture_buffered_bytes \d+/m);
      expect(capm).toMatch(/^capture_slot_confirmed_lsn \d+/m);

      // status: both processes healthy, lag 0, the slot and the outbox read.
      pidDir = await mkdtemp(path.join(tmpdir(), 'status-'));
      await writeFile(path.join(pidDir, 'capture.pid'), `${capture.proc.pid}\n`);
      await writeFile(path.join(pidDir, 'consumers.pid'), `${consumer.proc.pid}\n`);
      const statusEnv = { ...env, CAPTURE_METRICS_PORT: String(capturePort), CONSUMER_HEALTH_PORT: String(consumerPort) };
      const status = async (...args: string[]) => {
        let text = '';
        const code = await runStatus(['--processes', 'capture,consumers', '--pid-dir', pidDir!, ...args], { env: statusEnv, out: (t) => { text += t; }, err: (t) => { text += t; } });
        return { code, text };
      };
      const ok = await status('--json');
      const js = JSON.parse(ok.text) as PipelineStatus;
      expect(js.problems, ok.text).toEqual([]);
      expect(ok.code).toBe(0);
      expect(js.processes.map((p) => [p.name, p.state, p.pid])).toEqual([['capture', 'ok', capture.proc.pid], ['consumers', 'ok', consumer.proc.pid]]);
      const g = js.groups.find((x) => x.group === group)!;
      expect(g.lag).toBe('0');
      expect(g.partitions).toBe(topics.length);
      expect(g.lastAppliedAt).not.toBeNull();
      expect(js.slot).toMatchObject({ name: s, state: 'ok', active: true });
      expect(BigInt(js.slot.retainedBytes!)).toBeGreaterThan(0n);
      expect(js.outbox.depth).toBe(0);
      const table = await status();
      expect(table.code).toBe(0);
      expect(table.text).toMatch(new RegExp(`^process consumers +ok +pid ${consumer.proc.pid}, ready`, 'm'));
      expect(table.text).toMatch(new RegExp(`^group ${group} +ok +lag 0;`, 'm'));
      // WAL safety: over the limit is a warning (exit 0), a failure with --strict.
      const warn = await status('--wal-warn-bytes', '1');
      expect(warn.code).toBe(0);
      expect(warn.text).toMatch(new RegExp(`^slot ${s} +WARN +retains .* of WAL \\(warn at 1 B\\)`, 'm'));
      expect((await status('--wal-warn-bytes', '1', '--strict')).code).toBe(1);

      // Stall the consumer: hold the namespace lock every batch transaction takes, and give it work.
      locker = new pg.Client({ connectionString: stackEnv.warehouseUrl });
      await locker.connect();
      await locker.query('SELECT pg_advisory_lock(hashtext($1))', [`cdc-warehouse:${schemas.staging}/${schemas.analytics}`]);
      const stalledAt = Date.now();
      await gen.placeOrders(5, 1);
      await waitFor('changes waiting in the topics', async () => (await groupLag(admin, wh!, schemas!, group, topics)) > 0, 30_000);
      const unready = await waitFor('consumer unready', async () => {
        const r = await get(consumerPort, '/readyz');
        return r.status === 503 && /watchdog: no progress/.test(r.text) ? r : null;
      }, 30_000);
      const body = JSON.parse(unready.text) as { status: string; reason: string; conditions: Record<string, { healthy: boolean }> };
      expect(body.status).toBe('unready');
      expect(body.reason).toMatch(/watchdog: no progress for \d+ s with work pending \(lag \d+\)/);
      expect(body.conditions.watchdog!.healthy).toBe(false);
      expect(metric((await get(consumerPort, '/metrics')).text, 'health_condition', { condition: 'watchdog' })).toBe(0);
      const bad = await status('--json');
      expect(bad.code).toBe(1);
      const badJs = JSON.parse(bad.text) as PipelineStatus;
      expect(badJs.processes.find((p) => p.name === 'consumers')).toMatchObject({ state: 'unhealthy', http: 503 });
      expect(badJs.problems.join('\n')).toMatch(/consumers: .*watchdog: no progress/);
      expect(Number(badJs.groups.find((x) => x.group === group)!.lag)).toBeGreaterThan(0);
      // The capture is not stalled: it sent everything to Kafka.
      expect(badJs.processes.find((p) => p.name === 'capture')!.state).toBe('ok');

      // At WATCHDOG_EXIT_MS the process exits non-zero, for a supervisor to restart it.
      const code = await Promise.race([exited(consumer.proc), new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 40_000))]);
      expect(code, consumer.lines.slice(-10).join('\n')).toBe(1);
      expect(Date.now() - stalledAt).toBeGreaterThanOrEqual(15_000);
      expect(consumer.lines.some((l) => /watchdog: stalled; exiting/.test(l))).toBe(true);
      const after = await status('--json');
      expect(after.code).toBe(1);
      expect((JSON.parse(after.text) as PipelineStatus).processes.find((p) => p.name === 'consumers')!.state).toBe('down');
    } finally {
      await locker?.query('SELECT pg_advisory_unlock_all()').catch(() => {});
      await admin.disconnect();
    }
  });
});
