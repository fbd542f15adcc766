import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { procCpuSeconds } from '../consumers/cpu.ts';
import { debeziumClasspath, startDebezium, stopDebezium } from '../../test/helpers/debezium.ts';
import { writeBacklog } from './backlog.ts';
import { createHarness, REPO, spawnCapture } from './harness.ts';
import { Kafka, logLevel } from '../../src/publisher/kafkajs.ts';
import { sleep } from '../../src/util/sleep.ts';
import { kafkaClientConfig } from '../../src/config/kafka.ts';

/**
 * Same-session comparison with Debezium 3.0.8's PostgreSQL connector (Kafka
 * Connect 3.9.1 standalone, jars resolved from Maven Central into ~/.m2 via
 * test/helpers/debezium-pom.xml and test/helpers/debezium.ts; nothing of Debezium is kept in the repo).
 * One backlog, written into slots created beforehand (one per run and side),
 * drained alternately by Debezium (JSON converter, schemas.enable=false — the
 * fastest configuration in BENCHMARKS.md; Confluent's Avro converter is not on
 * Maven Central) and by our capture (Avro). Both are timed the same way: from
 * process start until the topics hold every change. Results are merged into
 * bench-results/capture.json under `debezium`.
 */
const TOTAL = Number(process.env.BENCH_CHANGES ?? 1_001_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const STATE = `${REPO}/.stack/debezium`;
const log = (m: string) => process.stderr.write(`[bench:debezium] ${m}\n`);

const classpath = debeziumClasspath(STATE);
let loadavgBefore = '';

const h = await createHarness(`bench_dbz_${Date.now().toString(36)}`);
const kafka = new Kafka(kafkaClientConfig(h.config().kafka, { logLevel: logLevel.NOTHING }));
const admin = kafka.admin();
await admin.connect();

async function recordsUnder(prefix: string): Promise<number> {
  let n = 0;
  for (const t of ['customers', 'products', 'orders', 'order_items']) {
    const o = await admin.fetchTopicOffsets(`${prefix}.${h.id}.${t}`).catch(() => null);
    if (o) n += o.reduce((a, p) => a + Number(p.high), 0);
  }
  return n;
}

function peakRss(pid: number): number {
  try {
    return Math.round(Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024);
  } catch {
    return 0;
  }
}

/** The shared stack's broker (its server.properties is under this checkout's .stack/). */
function brokerPid(): number | undefined {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(join(REPO, '.stack/kafka/server.properties'))) return Number(d);
    } catch { /* gone */ }
  }
  return undefined;
}

/** Busy CPU seconds of the whole machine (every process, other sessions' too) from /proc/stat. */
function machineBusySeconds(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return (f.reduce((a, b) => a + b, 0) - idle) / 100;
}

const round2 = (x: number) => Math.round(x * 100) / 100;

/**
 * Times one drain and says where the machine's CPU went meanwhile: the
 * draining process (every thread), the walsender serving its slot, the
 * broker, and the machine as a whole (which includes whatever else runs).
 */
async function timeDrain(prefix: string, pid: number, expected: number, started: number) {
  let rss = 0;
  let walsender: number | undefined;
  let walsenderCpu = 0;
  const broker = brokerPid();
  const broker0 = broker === undefined ? 0 : procCpuSeconds(broker) ?? 0;
  const machine0 = machineBusySeconds();
  for (;;) {
    rss = Math.max(rss, peakRss(pid));
    if (walsender === undefined) {
      const { rows } = await h.pool.query<{ p: number | null }>('SELECT active_pid AS p FROM pg_replication_slots WHERE slot_name = $1', [prefix]);
      walsender = rows[0]?.p ?? undefined;
    }
    if (walsender !== undefined) walsenderCpu = procCpuSeconds(walsender) ?? walsenderCpu;
    if ((await recordsUnder(prefix)) >= expected) break;
    if (Date.now() - started > 900_000) throw new Error(`${prefix}: drain did not finish in 15 min`);
    await sleep(200);
  }
  const cpuSeconds = {
    process: round2(procCpuSeconds(pid) ?? 0),
    walsender: round2(walsenderCpu),
    broker: broker === undefined ? null : round2((procCpuSeconds(broker) ?? broker0) - broker0),
    machine: round2(machineBusySeconds() - machine0),
  };
  return { seconds: (Date.now() - started) / 1000, rssPeakMiB: rss, cpuSeconds, loadavg1m: Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]) };
}

try {
  const runs = Array.from({ length: RUNS }, (_, i) => i);
  for (const i of runs) {
    for (const side of ['dbz', 'ours']) await h.pool.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [`${h.id}_${side}${i}`]);
  }
  log(`writing a backlog of ${TOTAL} changes`);
  loadavgBefore = readFileSync('/proc/loadavg', 'utf8').trim();
  const { changes } = await writeBacklog(h.pool, h.id, TOTAL, log);
  const results: { side: string; run: number; seconds: number; changesPerSec: number; rssPeakMiB: number }[] = [];
  for (const i of runs) {
    // Debezium
    const prefix = `${h.id}_dbz${i}`;
    const started = Date.now();
    const java = startDebezium({
      classpath, stateDir: STATE, brokers: h.config().kafkaBrokers, sourceUrl: h.config().sourceUrl, restPort: 58083,
      connectors: [{ prefix, slot: prefix, publication: h.id, schema: h.id, schemasEnable: false }],
    });
    const d = await timeDrain(prefix, java.pid!, changes, started);
    await stopDebezium(java);
    results.push({ side: 'debezium-json-schemaless', run: i, ...d, changesPerSec: Math.round(changes / d.seconds) });
    log(JSON.stringify(results.at(-1)));

    // ours
    const ours = `${h.id}_ours${i}`;
    const started2 = Date.now();
    const child = spawnCapture({ ...h.env, CAPTURE_SLOT: ours, TOPIC_PREFIX: ours, CAPTURE_SNAPSHOT: 'never', CAPTURE_HEARTBEAT_MS: '0' });
    const o = await timeDrain(ours, child.pid!, changes, started2);
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    results.push({ side: 'ours-avro', run: i, ...o, changesPerSec: Math.round(changes / o.seconds) });
    log(JSON.stringify(results.at(-1)));
  }
  const med = (side: string) => {
    const xs = results.filter((r) => r.side === side).map((r) => r.seconds).sort((a, b) => a - b);
    return xs[Math.floor(xs.length / 2)]!;
  };
  const summary = {
    date: new Date().toISOString(), changes, loadavgBefore, loadavg: readFileSync('/proc/loadavg', 'utf8').trim(), runs: results,
    oursProducer: process.env.CAPTURE_PRODUCER ?? 'kafkajs',
    oursRun: process.env.BENCH_RUN === 'dist' ? 'dist (node, production build)' : 'src (tsx)',
    medianSeconds: { debezium: med('debezium-json-schemaless'), ours: med('ours-avro') },
    ratio: Number((med('debezium-json-schemaless') / med('ours-avro')).toFixed(2)),
  };
  const path = process.env.BENCH_OUT ?? `${REPO}/bench-results/capture.json`;
  const all = existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : {};
  all.debezium = summary;
  writeFileSync(path, `${JSON.stringify(all, null, 2)}\n`);
  log(`median drain: Debezium ${summary.medianSeconds.debezium}s, ours ${summary.medianSeconds.ours}s -> ours is ${summary.ratio}x`);
} finally {
  await admin.disconnect();
  const { rows } = await h.pool.query<{ s: string }>("SELECT slot_name AS s FROM pg_replication_slots WHERE slot_name LIKE $1 AND NOT active", [`${h.id}_%`]);
  for (const r of rows) await h.pool.query('SELECT pg_drop_replication_slot($1)', [r.s]).catch(() => {});
  await h.cleanup();
}
