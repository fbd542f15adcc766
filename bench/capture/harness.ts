import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import avro from 'avsc';
import type { KafkaMessage } from 'kafkajs';
import { Kafka, logLevel } from '../../src/publisher/kafkajs.ts';
import pg from 'pg';
import pino from 'pino';
import type { Env } from '../../src/config/env.ts';
import { kafkaClientConfig } from '../../src/config/kafka.ts';
import { migrate } from '../../src/migrations/runner.ts';
import { CaptureService } from '../../src/source/capture.ts';
import { loadCaptureConfig, type CaptureConfig } from '../../src/source/capture-config.ts';
import { sleep } from '../../src/util/sleep.ts';

/**
 * Shared by the capture integration tests and the benchmark: an isolated
 * source schema + publication + slot + topic prefix per run against the real
 * local stack, the capture in-process or as a child process, and a consumer
 * that decodes through the schema registry like any Confluent client would.
 */
export const REPO = fileURLToPath(new URL('../..', import.meta.url));

export interface Harness {
  id: string;
  pool: pg.Pool;
  env: Env;
  config(overrides?: Env): CaptureConfig;
  topic(table: string): string;
  cleanup(): Promise<void>;
}

export async function createHarness(id: string, opts: { demoSchema?: boolean } = {}): Promise<Harness> {
  const base = loadCaptureConfig({ ...process.env, CAPTURE_METRICS_PORT: '-1' });
  const pool = new pg.Pool({ connectionString: base.sourceUrl, max: 4 });
  if (opts.demoSchema !== false) {
    await migrate(pool, 'source', { schemas: { source_schema: id, meta_schema: `${id}_meta`, publication: id } });
  } else {
    await pool.query(`CREATE SCHEMA ${id}`);
  }
  const env: Env = {
    ...process.env,
    CAPTURE_SLOT: id, CAPTURE_PUBLICATION: id, TOPIC_PREFIX: id, CAPTURE_SCHEMAS: id,
    CAPTURE_META_SCHEMA: `${id}_meta`, CAPTURE_METRICS_PORT: '-1', CAPTURE_HEARTBEAT_MS: '1000',
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
  };
  return {
    id, pool, env,
    config: (overrides = {}) => loadCaptureConfig({ ...env, ...overrides }),
    topic: (table) => `${id}.${id}.${table}`,
    async cleanup() {
      for (let i = 0; i < 40; i++) {
        const { rows } = await pool.query('SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1', [id]);
        if (rows.length === 0) break;
        if (rows[0].active_pid === null) { await pool.query('SELECT pg_drop_replication_slot($1)', [id]); break; }
        await sleep(250);
      }
      await pool.query(`DROP PUBLICATION IF EXISTS ${id}`);
      await pool.query(`DROP SCHEMA IF EXISTS ${id} CASCADE`);
      await pool.query(`DROP SCHEMA IF EXISTS ${id}_meta CASCADE`);
      const kafka = new Kafka(kafkaClientConfig(base.kafka, { logLevel: logLevel.NOTHING }));
      const admin = kafka.admin();
      await admin.connect();
      // also the per-run prefixes the benchmark derives from the id (`<id>_r0.`, `<id>_lat.`)
      const topics = (await admin.listTopics()).filter((t) => t.startsWith(`${id}.`) || t.startsWith(`${id}_`));
      if (topics.length) await admin.deleteTopics({ topics }).catch(() => {});
      await admin.disconnect();
      await pool.end();
    },
  };
}

export async function startInProcess(cfg: CaptureConfig): Promise<CaptureService> {
  const log = pino({ level: process.env.LOG_LEVEL ?? 'warn' });
  const svc = new CaptureService(cfg, log, (err) => log.error({ err }, 'capture fatal in test'));
  await svc.start(new AbortController().signal);
  return svc;
}

/**
 * Runs the capture CLI as a child; its log goes to $CAPTURE_CHILD_LOG when set.
 * BENCH_RUN=dist runs the production build (`npm run build`, what the runtime
 * image runs) under plain node instead of the sources under tsx. `tree` is the
 * checkout to run (default this one): the benchmark's BENCH_TREES runs two
 * builds side by side, alternating, so a before/after shares the machine's noise.
 */
export function spawnCapture(env: Env, tree: string = REPO): ChildProcess {
  const out = process.env.CAPTURE_CHILD_LOG ? openSync(process.env.CAPTURE_CHILD_LOG, 'a') : 'ignore';
  const dist = join(tree, 'dist/src/cli/capture.js');
  if (process.env.BENCH_RUN === 'dist' && !existsSync(dist)) throw new Error(`BENCH_RUN=dist: ${dist} is missing; run npm run build first`);
  // BENCH_NODE_ARGS: node flags for the child that NODE_OPTIONS refuses (--cpu-prof --cpu-prof-dir=...)
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const args = [...nodeArgs, ...(process.env.BENCH_RUN === 'dist' ? [dist] : ['--import', 'tsx', 'src/cli/capture.ts'])];
  return spawn(process.execPath, args, {
    cwd: tree, env: env as NodeJS.ProcessEnv, stdio: ['ignore', out, 'inherit'],
  });
}

/** Longs decode to bigint (ids, LSNs and microsecond timestamps can pass 2^53); everything else as avsc does. */
const BigLong = avro.types.LongType.__with({
  fromBuffer: (b: Buffer) => b.readBigInt64LE(),
  toBuffer: (n: bigint) => { const b = Buffer.alloc(8); b.writeBigInt64LE(BigInt(n)); return b; },
  fromJSON: BigInt,
  toJSON: Number,
  isValid: (n: unknown) => typeof n === 'bigint',
  compare: (a: bigint, b: bigint) => (a === b ? 0 : a < b ? -1 : 1),
});
// A typeHook, not `registry: {long}`: the registry option object would be shared by every schema parsed.
export const AVRO_BIGINT_OPTIONS = {
  typeHook: (s: unknown) => (s === 'long' || (typeof s === 'object' && s !== null && (s as { type?: unknown }).type === 'long') ? BigLong : undefined),
};

export interface Decoded {
  topic: string;
  partition: number;
  offset: string;
  key: any;
  value: any;
  raw: KafkaMessage;
}

/**
 * Reads topics from the beginning until `done(all)` says so or the timeout
 * passes; returns everything read, decoded with the registry client.
 */
export async function consumeUntil(topics: string[], done: (all: Decoded[]) => boolean, timeoutMs = 60_000, decode = true): Promise<Decoded[]> {
  const cfg = loadCaptureConfig({ ...process.env, CAPTURE_METRICS_PORT: '-1' });
  const kafka = new Kafka(kafkaClientConfig(cfg.kafka, { logLevel: logLevel.NOTHING }));
  const registry = new SchemaRegistry({ host: cfg.registryUrl }, { [SchemaType.AVRO]: AVRO_BIGINT_OPTIONS as never });
  const consumer = kafka.consumer({ groupId: `t-${Math.random().toString(36).slice(2)}`, maxBytesPerPartition: 16 * 1024 * 1024 });
  const all: Decoded[] = [];
  // The capture creates a table's topic when it first sees the table; wait for it.
  const admin = kafka.admin();
  await admin.connect();
  await waitFor(`topics ${topics.join(', ')}`, async () => {
    const have = new Set(await admin.listTopics());
    return topics.every((t) => have.has(t));
  }, timeoutMs);
  await admin.disconnect();
  await consumer.connect();
  for (const t of topics) await consumer.subscribe({ topic: t, fromBeginning: true });
  let resolve!: () => void;
  let failure: Error | null = null;
  const finished = new Promise<void>((r) => { resolve = r; });
  if (done(all)) resolve();
  await consumer.run({
    eachBatch: async ({ batch }) => {
      try {
      for (const m of batch.messages) {
        all.push({
          topic: batch.topic, partition: batch.partition, offset: m.offset, raw: m,
          key: m.key && decode ? await registry.decode(m.key) : m.key,
          value: m.value && decode ? await registry.decode(m.value) : m.value,
        });
      }
      } catch (err) {
        // kafkajs would swallow this and retry forever; surface it instead.
        failure = err as Error;
        resolve();
      }
      if (done(all)) resolve();
    },
  });
  await Promise.race([finished, sleep(timeoutMs)]);
  await consumer.disconnect();
  if (failure) throw failure;
  return all;
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | null | false>, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}
