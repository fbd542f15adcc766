import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import kafkajs from 'kafkajs';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createHarness, startInProcess, waitFor, type Harness } from '../../bench/capture/harness.ts';
import { metricSum } from '../../bench/chaos/probes.ts';
import { CHAOS_MIX } from '../../bench/chaos/load.ts';
import { waitCaughtUp } from '../../src/consumer/lag.ts';
import { TABLE_NAMES } from '../../src/consumer/tables.ts';
import { TrafficGenerator } from '../../src/generator/writer.ts';
import { diffStagingWithSource } from '../../src/rebuild/source-compare.ts';
import { diffDerivedTables } from '../../consumers/warehouse/batch-recompute.ts';
import type { WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { diffRedisClv } from '../../src/sinks/redis/compare.ts';
import { sleep } from '../../src/util/sleep.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';
import { createTestWarehouse, dropTestWarehouse } from '../helpers/pipeline-cleanup.ts';

/**
 * Issue 12, a group that grows: the warehouse group goes from one member to
 * three and back under a steady load, on topics of 6 partitions, with small
 * transactions so that every rebalance lands while batches are in flight:
 * members join, one leaves cleanly (SIGTERM), one crashes (SIGKILL), both
 * come back, the first leaves. At the end staging equals the source and
 * every derived table equals its batch recomputation, Redis equals Postgres.
 */
const MAIN = fileURLToPath(new URL('../../consumers/warehouse/main.ts', import.meta.url));
const SEED = Number(process.env.TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));

interface Member { name: string; child: ChildProcess; port: Promise<number> }

describe('warehouse group growing from 1 to 3 members and shrinking, under load', () => {
  let h: Harness | undefined;
  let wh: pg.Pool | undefined;
  let schemas: WarehouseSchemas | undefined;
  const members: Member[] = [];
  const redis = new Redis(stackEnv.redisUrl, { maxRetriesPerRequest: 1 });
  const stops: Array<() => Promise<void>> = [];
  const exited = (c: ChildProcess) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r())));

  afterAll(async () => {
    for (const m of members) if (m.child.exitCode === null && m.child.signalCode === null) { m.child.kill('SIGKILL'); await exited(m.child); }
    for (const stop of stops.reverse()) await stop().catch(() => {});
    await h?.cleanup();
    await dropTestWarehouse(wh, schemas, redis, h?.id);
    await wh?.end();
    redis.disconnect();
  });

  it('ends with staging equal to the source and every derived table equal to its recomputation', async () => {
    const ctx = `seed ${SEED}`;
    h = await createHarness(uniqueId('grow'));
    const s = h.id;
    const topics = TABLE_NAMES.map((t) => h!.topic(t));
    const tw = await createTestWarehouse(s);
    ({ schemas, pool: wh } = tw);
    const group = tw.group;
    const kafka = new kafkajs.Kafka({ clientId: 'grow-test', brokers: stackEnv.kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    stops.push(() => admin.disconnect());

    const env = {
      ...process.env, ...tw.env,
      LOG_LEVEL: 'info', CONSUMER_HEALTH_PORT: '0', CONSUMER_MAX_MESSAGES_PER_TX: '40', CONSUMER_SESSION_TIMEOUT_MS: '6000',
    };
    const start = (name: string): Member => {
      const child = spawn(process.execPath, ['--import', 'tsx', MAIN], { env, stdio: ['ignore', 'pipe', 'inherit'] });
      // Its health port (CONSUMER_HEALTH_PORT=0: picked by the OS) from its "health listening" line.
      const port = new Promise<number>((resolve) => {
        createInterface({ input: child.stdout! }).on('line', (line) => {
          try {
            const j = JSON.parse(line) as { msg?: string; port?: number };
            if (j.msg === 'health listening' && j.port) resolve(j.port);
          } catch {
            // not a log line
          }
        });
      });
      const m = { name, child, port };
      members.push(m);
      return m;
    };
    const applied = async (m: Member): Promise<number> => {
      const res = await fetch(`http://127.0.0.1:${await m.port}/metrics`, { signal: AbortSignal.timeout(3000) });
      return metricSum(await res.text(), 'consumer_messages_applied_total') ?? 0;
    };
    const progress = async (what: string, ms: Member[]) => {
      const before = await Promise.all(ms.map((m) => applied(m).catch(() => 0)));
      await waitFor(`${what}: ${ms.map((m) => m.name).join(', ')} applying (${ctx})`, async () => {
        for (const m of ms) expect(m.child.exitCode, `${m.name} exited (${ctx})`).toBeNull();
        const now = await Promise.all(ms.map((m) => applied(m).catch(() => 0)));
        return now.every((n, i) => n > before[i]!) ? true : null;
      }, 90_000);
    };

    const gen = new TrafficGenerator(h.pool, { schema: s, seed: SEED });
    await gen.seedCatalog(200, 40);
    const capture = await startInProcess(h.config({ CAPTURE_SNAPSHOT: 'initial', CAPTURE_TOPIC_PARTITIONS: '6' }));
    stops.push(() => capture.stop());
    let writing = true;
    let writeError: unknown;
    const writer = (async () => {
      try {
        while (writing) {
          await gen.placeOrders(2, 1);
          await gen.sideEffects(CHAOS_MIX);
          await sleep(15);
        }
      } catch (err) {
        writeError = err;
      }
    })();
    await waitFor('capture topics', async () => { const have = new Set(await admin.listTopics()); return topics.every((t) => have.has(t)); }, 60_000);
    const meta = await admin.fetchTopicMetadata({ topics });
    expect(meta.topics.map((t) => t.partitions.length)).toEqual(topics.map(() => 6));

    const m1 = start('m1');
    await progress('one member', [m1]);
    const m2 = start('m2');
    const m3 = start('m3');
    await progress('three members', [m2, m3]);
    await waitFor('three members in the group', async () => ((await admin.describeGroups([group])).groups[0]?.members.length === 3 ? true : null), 30_000);
    await progress('three members', [m1, m2, m3]);
    m2.child.kill('SIGTERM');
    await exited(m2.child);
    expect(m2.child.exitCode, 'm2 left cleanly').toBe(0);
    await progress('after m2 left', [m1, m3]);
    m3.child.kill('SIGKILL');
    await exited(m3.child);
    await progress('after m3 crashed', [m1]);
    const m2b = start('m2b');
    const m3b = start('m3b');
    await progress('back to three', [m1, m2b, m3b]);
    m1.child.kill('SIGTERM');
    await exited(m1.child);
    await progress('after m1 left', [m2b, m3b]);
    writing = false;
    await writer;
    expect(writeError, ctx).toBeUndefined();

    await waitCaughtUp(admin, wh, schemas, group, topics, { timeoutMs: 90_000 });
    await waitFor('redis outbox flushed', async () => (Number((await wh!.query(`SELECT count(*) n FROM "${schemas!.meta}".redis_outbox`)).rows[0].n) === 0 ? true : null), 30_000);
    const src = await h.pool.connect();
    const client = await wh.connect();
    try {
      // The capture may still be sending the last changes: wait for staging to match, then assert it.
      let diffs = await diffStagingWithSource(src, s, client, schemas.staging);
      for (let i = 0; i < 40 && diffs.some((d) => d.missing + d.unexpected + d.differing > 0); i++) {
        await sleep(500);
        await waitCaughtUp(admin, wh, schemas, group, topics, { timeoutMs: 30_000 });
        diffs = await diffStagingWithSource(src, s, client, schemas.staging);
      }
      for (const d of diffs) expect(d, `stg_${d.table} (${ctx})`).toMatchObject({ missing: 0, unexpected: 0, differing: 0 });
      for (const d of await diffDerivedTables(client, schemas)) expect(d, `${d.table} (${ctx})`).toMatchObject({ missing: 0, unexpected: 0 });
      // Not vacuous.
      expect(diffs.find((d) => d.table === 'orders')!.sourceRows, ctx).toBeGreaterThan(300);
    } finally {
      src.release();
      client.release();
    }
    expect(await diffRedisClv(wh, redis, schemas, `${s}:`), ctx).toEqual({ missing: [], stale: [], extra: [] });
    for (const m of [m2b, m3b]) m.child.kill('SIGTERM');
    await Promise.all([m2b, m3b].map((m) => exited(m.child)));
  }, 400_000);
});
