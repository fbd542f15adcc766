import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import kafkajs from 'kafkajs';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { createHarness, REPO, spawnCapture, type Harness } from '../capture/harness.ts';
import type { Env } from '../../src/config/env.ts';
import { loadStackConfig } from '../../src/config/index.ts';
import { kafkaClientConfig } from '../../src/config/kafka.ts';
import { redisClientOptions } from '../../src/config/redis.ts';
import { groupLag } from '../../src/consumer/lag.ts';
import { TABLE_NAMES } from '../../src/consumer/tables.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { createWarehousePool, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { sleep } from '../../src/util/sleep.ts';

/**
 * One isolated pipeline for the consumer benchmark: its own source schema,
 * publication, slot and topic prefix (bench/capture/harness.ts), its own
 * warehouse schemas, consumer group and Redis key prefix; the capture, the
 * consumer and the generator each in a child process. `cleanup()` removes
 * all of it, the replication slot included.
 */
export const log = (m: string) => process.stderr.write(`[bench:consumers ${new Date().toISOString().slice(11, 19)}] ${m}\n`);
export const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
export const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2; };
export const pct = (xs: number[], p: number) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!; };
export const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

export interface Pipeline {
  h: Harness;
  id: string;
  schemas: WarehouseSchemas;
  group: string;
  keyPrefix: string;
  topics: string[];
  wh: pg.Pool;
  redis: Redis;
  admin: kafkajs.Admin;
  consumerEnv: Env;
  startCapture(): Promise<void>;
  stopCapture(): Promise<void>;
  startConsumer(extraEnv?: Env, nodeArgs?: string[]): Promise<void>;
  stopConsumer(): Promise<void>;
  generator: GeneratorProc;
  captureLagBytes(): Promise<number>;
  consumerLag(): Promise<number>;
  topicMessages(): Promise<number>;
  consumerPid(): number | undefined;
  capturePid(): number | undefined;
  cleanup(): Promise<void>;
}

export interface GeneratorProc {
  send(cmd: string): Promise<any>;
  close(): Promise<void>;
}

function childLog(name: string): number | 'ignore' {
  return process.env.BENCH_CHILD_LOG ? openSync(`${process.env.BENCH_CHILD_LOG}.${name}`, 'a') : 'ignore';
}

function startGenerator(url: string, schema: string, seed: number): GeneratorProc {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/consumers/generator.ts', url, schema, String(seed)], { cwd: REPO, stdio: ['pipe', 'pipe', 'inherit'] });
  child.stdin!.on('error', () => {});
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return {
    async send(cmd) {
      child.stdin!.write(`${cmd}\n`);
      const r = await lines.next();
      if (r.done) throw new Error(`generator exited during "${cmd}"`);
      return JSON.parse(r.value);
    },
    async close() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.stdin!.on('error', () => {});
      child.stdin!.end('quit\n');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

async function stopChild(c: ChildProcess | undefined): Promise<void> {
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise((r) => c.once('exit', r));
  c.kill('SIGTERM');
  await Promise.race([exited, sleep(20_000)]);
  if (c.exitCode === null && c.signalCode === null) { c.kill('SIGKILL'); await exited; }
}

export async function createPipeline(id: string, seed = 42): Promise<Pipeline> {
  const stack = loadStackConfig();
  const h = await createHarness(id);
  const schemas = { staging: `${id}_stg`, analytics: `${id}_an`, meta: `${id}_wm` };
  const group = `${id}_wh`;
  const keyPrefix = `${id}:`;
  const topics = TABLE_NAMES.map((t) => h.topic(t));
  const wh = createWarehousePool(stack.warehouseUrl, 4);
  await migrate(wh, 'warehouse', { schemas: warehouseSchemaNames(schemas) });
  const redis = new Redis(stack.redisUrl, redisClientOptions(stack.redis, { maxRetriesPerRequest: 1 }));
  const kafka = new kafkajs.Kafka(kafkaClientConfig(stack.kafka, { clientId: 'bench-consumers', logLevel: kafkajs.logLevel.NOTHING }));
  const admin = kafka.admin();
  await admin.connect();
  const consumerEnv: Env = {
    ...process.env, TOPIC_PREFIX: id, SOURCE_SCHEMA: id, CONSUMER_GROUP: group,
    STAGING_SCHEMA: schemas.staging, ANALYTICS_SCHEMA: schemas.analytics, META_SCHEMA: schemas.meta,
    REDIS_KEY_PREFIX: keyPrefix, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn', CONSUMER_TOPIC_WAIT_MS: '120000',
    // A port of its own, so a bench run never collides with the demo's consumer.
    CONSUMER_HEALTH_PORT: '0',
  };
  let capture: ChildProcess | undefined;
  let consumer: ChildProcess | undefined;
  const generator = startGenerator(stack.sourceUrl, id, seed);
  const p: Pipeline = {
    h, id, schemas, group, keyPrefix, topics, wh, redis, admin, consumerEnv, generator,
    async startCapture() {
      capture = spawnCapture({ ...h.env, CAPTURE_SNAPSHOT: 'never', LOG_LEVEL: 'warn' });
      // the slot exists once the capture has started streaming
      for (let i = 0; ; i++) {
        const { rows } = await h.pool.query('SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1', [id]);
        if (rows[0]?.active_pid) break;
        if (capture.exitCode !== null || i > 300) throw new Error('capture did not start');
        await sleep(100);
      }
    },
    stopCapture: () => stopChild(capture),
    async startConsumer(extraEnv = {}, nodeArgs = []) {
      consumer = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', 'consumers/warehouse/main.ts'], {
        cwd: REPO, env: { ...consumerEnv, ...extraEnv } as NodeJS.ProcessEnv, stdio: ['ignore', childLog('consumer'), 'inherit'],
      });
    },
    stopConsumer: () => stopChild(consumer),
    async captureLagBytes() {
      const { rows } = await h.pool.query<{ b: string }>('SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::text AS b FROM pg_replication_slots WHERE slot_name = $1', [id]);
      return Number(rows[0]?.b ?? -1);
    },
    async consumerLag() {
      // only the topics the capture has created so far (it creates a table's topic on its first change)
      const have = new Set(await admin.listTopics());
      return groupLag(admin, wh, schemas, group, topics.filter((t) => have.has(t)));
    },
    async topicMessages() {
      let n = 0;
      const have = new Set(await admin.listTopics());
      for (const t of topics) if (have.has(t)) for (const o of await admin.fetchTopicOffsets(t)) n += Number(o.high) - Number(o.low);
      return n;
    },
    consumerPid: () => consumer?.pid,
    capturePid: () => capture?.pid,
    async cleanup() {
      await generator.close().catch(() => {});
      await stopChild(consumer).catch(() => {});
      await stopChild(capture).catch(() => {});
      await wh.query(`DROP SCHEMA IF EXISTS "${schemas.staging}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.analytics}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.meta}" CASCADE`).catch((e) => log(`cleanup warehouse: ${e}`));
      // leftovers of an interrupted replay (its schemas carry our prefix)
      const { rows } = await wh.query<{ n: string }>(`SELECT nspname AS n FROM pg_namespace WHERE nspname LIKE $1`, [`${id}\\_%`]);
      for (const r of rows) await wh.query(`DROP SCHEMA IF EXISTS "${r.n}" CASCADE`).catch(() => {});
      await wh.end();
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${keyPrefix}*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length) await redis.unlink(...keys);
      } while (cursor !== '0');
      redis.disconnect();
      const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith(id));
      if (groups.length) await admin.deleteGroups(groups).catch(() => {});
      await admin.disconnect();
      await h.cleanup(); // slot, publication, source schemas, topics
    },
  };
  return p;
}

/** Waits until the capture has published `expected` messages and the consumer group applied them all. */
/** Node flags for a CPU profile of the consumer when BENCH_PROFILE_DIR is set (--cpu-prof is refused in NODE_OPTIONS). */
export function consumerProfileArgs(): string[] {
  const dir = process.env.BENCH_PROFILE_DIR;
  return dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}/consumer`] : [];
}

export async function waitDrained(p: Pipeline, opts: { expectedMessages?: number; group?: boolean; timeoutMs: number }): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    const msgs = await p.topicMessages();
    const okTopics = opts.expectedMessages === undefined ? (await p.captureLagBytes()) < 64 * 1024 : msgs >= opts.expectedMessages;
    if (okTopics && (!opts.group || (await p.consumerLag()) === 0)) return Date.now() - t0;
    if (Date.now() - t0 > opts.timeoutMs) throw new Error(`not drained after ${opts.timeoutMs} ms: ${msgs} messages in the topics (expected ${opts.expectedMessages}), consumer lag ${opts.group ? await p.consumerLag() : '-'}`);
    await sleep(500);
  }
}
