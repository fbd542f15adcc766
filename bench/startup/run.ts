import { execSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import kafkajs from 'kafkajs';
import { Redis } from 'ioredis';
import { loadStackConfig } from '../../src/config/index.ts';
import { kafkaClientConfig } from '../../src/config/kafka.ts';
import { redisClientOptions } from '../../src/config/redis.ts';
import { createRegistry } from '../../src/consumer/avro.ts';
import { TABLE_NAMES } from '../../src/consumer/tables.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { createWarehousePool, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { registerTable, ShopSim } from '../../test/helpers/debezium-fixtures.ts';

/**
 * npm run bench:startup: time from process start to the first applied batch
 * of the warehouse consumer (consumers/warehouse/main.ts as a child
 * process), after a clean stop (SIGTERM) and after a SIGKILL, with messages
 * pending each time. Median of BENCH_RUNS (5) each, with where the time goes:
 * until the first log line (node + tsx loading the modules), until the
 * migrations are checked ("configured"), until the group is joined and
 * partitions assigned ("ready"; kafkajs GROUP_JOIN), until the first batch is
 * committed in Postgres. After a SIGKILL the killed member still holds its
 * partitions until its session times out (CONSUMER_SESSION_TIMEOUT_MS, 10 s
 * default), which the join phase shows.
 *
 * Runs against the configured stack (the local one by default) in its own
 * schemas, topics, group and key prefix, removed at the end.
 * Results: bench-results/startup.json (BENCH_OUT).
 */
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const MAIN = `${REPO}consumers/warehouse/main.ts`;
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const OUT = process.env.BENCH_OUT ?? `${REPO}bench-results/startup.json`;
const stack = loadStackConfig();
const id = `bst_${Date.now().toString(36).slice(-6)}`;
const schemas: WarehouseSchemas = { staging: `${id}_stg`, analytics: `${id}_an`, meta: `${id}_meta` };
const topics = TABLE_NAMES.map((t) => `${id}.public.${t}`);
const log = (m: string) => process.stderr.write(`[bench:startup] ${m}\n`);

const kafka = new kafkajs.Kafka(kafkaClientConfig(stack.kafka, { clientId: id, logLevel: kafkajs.logLevel.NOTHING }));
const admin = kafka.admin();
const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: kafkajs.Partitioners.DefaultPartitioner });
const pool = createWarehousePool(stack.warehouseUrl, 2);
const registry = createRegistry(stack.registry);

interface Sample { mode: 'clean' | 'sigkill'; firstLogMs: number; configuredMs: number; readyMs: number; firstBatchMs: number }

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : Math.round((s[s.length / 2 - 1]! + s[s.length / 2]!) / 2);
};

async function applied(): Promise<bigint> {
  const { rows } = await pool.query(`SELECT coalesce(sum(next_offset), 0)::text AS n FROM "${schemas.meta}".consumer_offsets WHERE consumer_group = $1`, [id]);
  return BigInt(rows[0].n);
}

const sim = new ShopSim(4242);
const enc = new Map<string, Awaited<ReturnType<typeof registerTable>>>();
let sent = 0;
/** A few hundred changes across the four topics, so a batch is pending when the consumer comes up. */
async function producePending(): Promise<void> {
  const from = sim.events.length;
  sim.randomWorkload(60);
  const byTopic = new Map<string, Array<{ key: Buffer; value: Buffer }>>();
  for (const ev of sim.events.slice(from)) {
    const e = enc.get(ev.table)!;
    byTopic.set(e.topic, [...(byTopic.get(e.topic) ?? []), { key: e.encodeKey((ev.after ?? ev.before)!), value: e.encodeValue(ev) }]);
  }
  await producer.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
  sent += sim.events.length - from;
}

function spawnConsumer(): { child: ChildProcess; marks: Map<string, number>; t0: number } {
  const t0 = performance.now();
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
    env: {
      ...process.env, TOPIC_PREFIX: id, SOURCE_SCHEMA: 'public', CONSUMER_GROUP: id,
      STAGING_SCHEMA: schemas.staging, ANALYTICS_SCHEMA: schemas.analytics, META_SCHEMA: schemas.meta,
      REDIS_KEY_PREFIX: `${id}:`, CONSUMER_HEALTH_PORT: '0', LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const marks = new Map<string, number>();
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const at = performance.now() - t0;
    if (!marks.has('first')) marks.set('first', at);
    try {
      const msg = (JSON.parse(line) as { msg?: string }).msg ?? '';
      if (msg === 'warehouse consumer configured' && !marks.has('configured')) marks.set('configured', at);
      if (msg === 'ready' && !marks.has('ready')) marks.set('ready', at);
    } catch {
      // not JSON
    }
  });
  return { child, marks, t0 };
}

const exited = (c: ChildProcess) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r())));

async function waitFirstBatch(before: bigint, t0: number, child: ChildProcess): Promise<number> {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`consumer exited with ${child.exitCode}`);
    if ((await applied()) > before) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('no batch applied in 120 s');
}

async function main(): Promise<void> {
  await Promise.all([admin.connect(), producer.connect()]);
  await admin.createTopics({ topics: topics.map((topic) => ({ topic, numPartitions: 1 })), waitForLeaders: true });
  await migrate(pool, 'warehouse', { schemas: warehouseSchemaNames(schemas) });
  for (const t of TABLE_NAMES) enc.set(t, await registerTable(registry, id, t));
  const samples: Sample[] = [];
  // The first start (cold group, first migrations of the namespace) is not measured; it ends with a clean stop.
  let prev = spawnConsumer();
  await producePending();
  await waitFirstBatch(0n, prev.t0, prev.child);
  prev.child.kill('SIGTERM');
  await exited(prev.child);
  for (const mode of ['clean', 'sigkill'] as const) {
    for (let i = 0; i < RUNS; i++) {
      await producePending();
      const before = await applied();
      const run = spawnConsumer();
      const firstBatchMs = await waitFirstBatch(before, run.t0, run.child);
      samples.push({
        mode, firstBatchMs: Math.round(firstBatchMs), firstLogMs: Math.round(run.marks.get('first') ?? NaN),
        configuredMs: Math.round(run.marks.get('configured') ?? NaN), readyMs: Math.round(run.marks.get('ready') ?? NaN),
      });
      log(`${mode} #${i + 1}: first batch ${Math.round(firstBatchMs)} ms (first log ${samples.at(-1)!.firstLogMs}, configured ${samples.at(-1)!.configuredMs}, ready ${samples.at(-1)!.readyMs})`);
      // How this incarnation ends decides what the next one meets: a clean stop (LeaveGroup) or a dead member.
      const next = mode === 'clean' && i < RUNS - 1 ? 'SIGTERM' : 'SIGKILL';
      await new Promise((r) => setTimeout(r, 500));
      run.child.kill(next);
      await exited(run.child);
      prev = run;
    }
  }
  const summary = (mode: Sample['mode']) => {
    const s = samples.filter((x) => x.mode === mode);
    return {
      runs: s.length,
      medianMs: {
        firstBatch: median(s.map((x) => x.firstBatchMs)), firstLog: median(s.map((x) => x.firstLogMs)),
        migrationsChecked: median(s.map((x) => x.configuredMs)), groupJoined: median(s.map((x) => x.readyMs)),
      },
      samples: s,
    };
  };
  const commit = execSync('git rev-parse --short HEAD', { cwd: REPO }).toString().trim();
  const result = {
    date: new Date().toISOString(), gitCommit: commit,
    machine: { cpus: cpus().length, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version, loadavg: loadavg().map((x) => Math.round(x * 100) / 100) },
    sessionTimeoutMs: Number(process.env.CONSUMER_SESSION_TIMEOUT_MS ?? 10_000),
    messagesProduced: sent,
    afterCleanStop: summary('clean'),
    afterSigkill: summary('sigkill'),
  };
  mkdirSync(`${REPO}bench-results`, { recursive: true });
  writeFileSync(OUT, `${JSON.stringify(result, null, 2)}\n`);
  log(`after a clean stop: median ${result.afterCleanStop.medianMs.firstBatch} ms; after SIGKILL: median ${result.afterSigkill.medianMs.firstBatch} ms -> ${OUT}`);
}

try {
  await main();
} finally {
  await admin.deleteTopics({ topics }).catch(() => {});
  await admin.deleteGroups([id]).catch(() => {});
  await pool.query(`DROP SCHEMA IF EXISTS "${schemas.staging}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.analytics}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.meta}" CASCADE`).catch(() => {});
  const redis = new Redis(stack.redisUrl, redisClientOptions(stack.redis, { lazyConnect: true, maxRetriesPerRequest: 1 }));
  await redis.connect().then(async () => {
    const keys = await redis.keys(`${id}:*`);
    if (keys.length) await redis.del(...keys);
  }).catch(() => {});
  redis.disconnect();
  await Promise.all([producer.disconnect(), admin.disconnect(), pool.end()]);
}
