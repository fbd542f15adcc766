import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import kafkajs from 'kafkajs';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createHarness, spawnCapture, waitFor, type Harness } from '../../bench/capture/harness.ts';
import { groupLag } from '../../src/consumer/lag.ts';
import { TABLE_NAMES } from '../../src/consumer/tables.ts';
import { DEFAULT_MIX, TrafficGenerator } from '../../src/generator/writer.ts';
import { Rng } from '../../src/generator/rng.ts';
import { runVerify } from '../../src/rebuild/verify.ts';
import type { WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { diffRedisClv } from '../../src/sinks/redis/compare.ts';
import { parseLsn } from '../../src/source/lsn.ts';
import { sleep } from '../../src/util/sleep.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';
import { createTestWarehouse, dropTestWarehouse } from '../helpers/pipeline-cleanup.ts';
import { startThrowawayKafkaCluster, type ThrowawayKafkaCluster } from '../helpers/throwaway-kafka-cluster.ts';

/**
 * The pipeline on a real three-broker KRaft cluster (scripts/stack.sh with
 * STACK_KAFKA_BROKERS=3 on ports 22500-22505): traffic into the source,
 * the capture and the warehouse consumer as child processes, and during
 * the load a SIGKILL of the broker leading a partition being written, then
 * of the active controller, each restarted later. With every kill the
 * capture is SIGKILLed too and restarted, so it resumes from the slot's
 * confirmed LSN: had the slot been confirmed past what Kafka holds, those
 * changes would be missing in the end. They are not: staging equals the
 * source, every derived table equals the batch recomputation, Redis equals
 * Postgres.
 */
// below the ephemeral port range, as testPortRange (test/helpers/throwaway-kafka.ts): brokers restart on these
const BASE_PORT = 22500;
const SEED = Number(process.env.TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
const MAIN = fileURLToPath(new URL('../../consumers/warehouse/main.ts', import.meta.url));

describe('three-broker Kafka: capture → warehouse consumer while brokers die', () => {
  let cluster: ThrowawayKafkaCluster | undefined;
  let h: Harness | undefined;
  let wh: pg.Pool | undefined;
  let schemas: WarehouseSchemas | undefined;
  const children: ChildProcess[] = [];
  const redis = new Redis(stackEnv.redisUrl, { maxRetriesPerRequest: 1 });
  const stops: Array<() => Promise<void>> = [];
  const exited = (c: ChildProcess) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r())));

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) { c.kill('SIGKILL'); await exited(c); }
    for (const stop of stops.reverse()) await stop().catch(() => {});
    await h?.cleanup();
    await dropTestWarehouse(wh, schemas, redis, h?.id);
    await wh?.end();
    redis.disconnect();
    await cluster?.stop();
  }, 120_000);

  it('ends exact after the partition leader and the active controller are SIGKILLed under load', async () => {
    const ctx = `seed ${SEED}`;
    const rng = new Rng(SEED ^ 0xc1);
    cluster = await startThrowawayKafkaCluster(BASE_PORT);
    const brokers = cluster.brokers.join(',');
    h = await createHarness(uniqueId('kcluster'));
    const s = h.id;
    const topics = TABLE_NAMES.map((t) => h!.topic(t));
    const tw = await createTestWarehouse(s, { kafkaBrokers: cluster.brokers });
    ({ schemas, pool: wh } = tw);
    const group = tw.group;
    const kafka = new kafkajs.Kafka({ clientId: 'kafka-cluster-test', brokers: cluster.brokers, logLevel: kafkajs.logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    stops.push(() => admin.disconnect());

    const consumerEnv = {
      ...process.env, ...tw.env, LOG_LEVEL: 'error', CONSUMER_HEALTH_PORT: '0', CONSUMER_SESSION_TIMEOUT_MS: '6000',
    };
    const captureEnv = { ...h.env, KAFKA_BROKERS: brokers, CAPTURE_SNAPSHOT: 'initial', CAPTURE_TOPIC_PARTITIONS: '3', LOG_LEVEL: 'error' };
    const consumer = spawn(process.execPath, ['--import', 'tsx', MAIN], { env: consumerEnv, stdio: ['ignore', 'ignore', 'inherit'] });
    children.push(consumer);
    const gen = new TrafficGenerator(h.pool, { schema: s, seed: SEED });
    await gen.seedCatalog(100, 30);
    let capture = spawnCapture(captureEnv);
    children.push(capture);

    let writing = true;
    let writeError: unknown;
    const writer = (async () => {
      try {
        while (writing) {
          const n = rng.chance(0.3) ? rng.int(2, 4) : 1;
          await gen.placeOrders(n, n);
          for (let i = 0; i < 1 + n; i++) await gen.sideEffects(DEFAULT_MIX);
          await sleep(rng.int(20, 60));
        }
      } catch (err) {
        writeError = err;
      }
    })();
    const applied = async (): Promise<number> => {
      const { rows } = await wh!.query(`SELECT coalesce(sum(next_offset), 0)::text AS n FROM "${schemas!.meta}".consumer_offsets WHERE consumer_group = $1`, [group]);
      return Number(rows[0].n);
    };
    const confirmed = async (): Promise<bigint> => {
      const { rows } = await h!.pool.query<{ l: string }>('SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = $1', [s]);
      return parseLsn(rows[0]!.l);
    };
    await waitFor(`capture topics (${ctx})`, async () => {
      const have = new Set(await admin.listTopics());
      return topics.every((t) => have.has(t));
    }, 90_000);
    await waitFor(`first batch applied (${ctx})`, async () => (await applied()) > 0, 90_000);

    // Replication the capture chose from the cluster: 3 replicas, 2 in sync required.
    const orders = h.topic('orders');
    const meta = await admin.fetchTopicMetadata({ topics: [orders] });
    expect(meta.topics[0]!.partitions.map((p) => p.replicas.length)).toEqual([3, 3, 3]);
    const cfg = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: 2, name: orders, configNames: ['min.insync.replicas'] }] });
    expect(cfg.resources[0]!.configEntries[0]!.configValue).toBe('2');

    const faults: Array<{ what: string; node: number; confirmedLsn: bigint; recoveredMs: number }> = [];
    const fault = async (what: string, node: number, restart: boolean) => {
      const before = await applied();
      const t = Date.now();
      cluster!.kill(node);
      // The capture dies with it; the one that replaces it resumes from the slot's confirmed LSN.
      capture.kill('SIGKILL');
      await exited(capture);
      const lsn = await confirmed();
      capture = spawnCapture(captureEnv);
      children.push(capture);
      await waitFor(`progress after ${what} (node ${node}, ${ctx})`, async () => {
        if (consumer.exitCode !== null || capture.exitCode !== null) throw new Error(`a process exited after ${what}: consumer ${consumer.exitCode}, capture ${capture.exitCode} (${ctx})`);
        return (await applied()) > before + 20;
      }, 120_000);
      faults.push({ what, node, confirmedLsn: lsn, recoveredMs: Date.now() - t });
      // Back to three brokers before the next fault (two dead of three would lose the quorum).
      if (restart) await cluster!.up();
    };

    const leader = (await admin.fetchTopicMetadata({ topics: [orders] })).topics[0]!.partitions.find((p) => p.partitionId === 0)!.leader;
    await fault('partition leader', leader, true);
    await sleep(2_000);
    // The load ends on two brokers: writes go on with min.insync.replicas=2.
    await fault('active controller', cluster.activeController(), false);
    await sleep(1_000);
    writing = false;
    await writer;
    expect(writeError, ctx).toBeUndefined();

    const verify = async () => {
      const client = await wh!.connect();
      const src = await h!.pool.connect();
      try {
        return await runVerify(client, schemas!, { source: { client: src, schema: s } });
      } finally {
        src.release();
        client.release();
      }
    };
    // A request to the dead broker may fail while clients learn the new metadata: that is "not yet", not a verdict.
    await waitFor(`caught up and staging equal to the source (${ctx})`, async () => {
      try {
        if ((await groupLag(admin, wh!, schemas!, group, topics)) !== 0) return false;
        return (await verify()).source!.every((d) => d.missing + d.unexpected + d.differing === 0);
      } catch {
        return false;
      }
    }, 120_000).catch(() => undefined);
    expect(consumer.exitCode, `consumer exited (${ctx})`).toBeNull();
    expect(capture.exitCode, `capture exited (${ctx})`).toBeNull();
    await waitFor('redis outbox flushed', async () => Number((await wh!.query(`SELECT count(*) n FROM "${schemas!.meta}".redis_outbox`)).rows[0].n) === 0, 20_000)
      .catch(() => undefined);

    const report = await verify();
    const summary = JSON.stringify({ seed: SEED, faults: faults.map((f) => ({ ...f, confirmedLsn: f.confirmedLsn.toString() })), stats: gen.stats });
    expect(report.source!.filter((d) => d.missing + d.unexpected + d.differing > 0), `staging vs source: ${summary}`).toEqual([]);
    expect(report.recompute.filter((d) => d.missing + d.unexpected > 0), `derived vs batch recomputation: ${summary}`).toEqual([]);
    expect(await diffRedisClv(wh, redis, schemas, `${s}:`), summary).toEqual({ missing: [], stale: [], extra: [] });
    // Not vacuous: two different faults, a stream with updates and deletes, and a slot that moved on between them.
    expect(faults.map((f) => f.what)).toEqual(['partition leader', 'active controller']);
    expect(faults[1]!.confirmedLsn, summary).toBeGreaterThan(faults[0]!.confirmedLsn);
    expect(gen.stats.orders, summary).toBeGreaterThan(50);
    expect(gen.stats.deletes + gen.stats.statusChanges, summary).toBeGreaterThan(10);
    if (process.env.TEST_VERBOSE) console.log(summary);

    consumer.kill('SIGTERM');
    capture.kill('SIGTERM');
    await Promise.all([exited(consumer), exited(capture)]);
  }, 420_000);
});
