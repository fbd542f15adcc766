import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { resolve } from 'node:path';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import pg from 'pg';
import { loadRdkafka } from '../../src/publisher/rdkafka-transport.ts';
import { parseLsn } from '../../src/source/lsn.ts';
import { sleep } from '../../src/util/sleep.ts';
import { writeBacklog } from './backlog.ts';
import { createHarness, REPO, spawnCapture, startInProcess, type Harness } from './harness.ts';

/**
 * npm run bench:capture
 *
 * 1. Backlog: >= 1M row changes (customers, products, orders + order_items in
 *    ~1,000-row transactions) written while the capture is stopped, into
 *    slots created beforehand (one per run, so every run drains the same
 *    WAL); then the capture CLI drains it into Kafka. Reported: drain time
 *    from process start, changes/s, peak RSS (VmHWM) and CPU of the capture
 *    process; median of BENCH_RUNS (default 3).
 * 2. Latency: steady ~10k changes/s of small transactions into a caught-up
 *    capture; commit (Postgres commit timestamp) -> Kafka ack, p50/p99.
 * Results: bench-results/capture.json.
 */
const TOTAL = Number(process.env.BENCH_CHANGES ?? 1_001_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const RATE = Number(process.env.BENCH_RATE ?? 10_000);
const LATENCY_SECONDS = Number(process.env.BENCH_LATENCY_SECONDS ?? 20);
/** BENCH_PHASES=latency skips the backlog runs (a small backlog still provides the rows the writer references). */
const PHASES = new Set((process.env.BENCH_PHASES ?? 'backlog,latency').split(','));
/** Extra capture settings for both phases, as JSON (e.g. '{"CAPTURE_PRODUCER":"rdkafka"}'). */
const benchEnv: Record<string, string> = JSON.parse(process.env.BENCH_ENV ?? '{}');
/** Producers compared, each in every run (CAPTURE_PRODUCER values); default: kafkajs, plus rdkafka when it loads. */
const PRODUCERS = (process.env.BENCH_PRODUCERS ?? `kafkajs${rdkafkaLoads() ? ',rdkafka' : ''}`).split(',');

/**
 * Checkouts compared, each in every run: BENCH_TREES=before=/tmp/x,after=. (name=dir, dir a checkout
 * with node_modules, built when BENCH_RUN=dist). Default: this checkout alone. Runs alternate the
 * order (ABBA) so drift in the machine's load is shared; medians are per tree and producer.
 */
const TREES = (process.env.BENCH_TREES ?? `this=${REPO}`).split(',').map((t) => {
  const i = t.indexOf('=');
  if (i < 1) throw new Error(`BENCH_TREES: "${t}" is not name=dir`);
  return { tree: t.slice(0, i), dir: resolve(t.slice(i + 1)) };
});

function rdkafkaLoads(): boolean {
  try { loadRdkafka(); return true; } catch { return false; }
}
const log = (m: string) => process.stderr.write(`[bench:capture] ${m}\n`);

function procStat(pid: number): { rssPeakMiB: number; cpuSeconds: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const hwm = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const ticks = Number(stat[11]) + Number(stat[12]);
  return { rssPeakMiB: Math.round(hwm / 1024), cpuSeconds: ticks / 100 };
}

/**
 * CPU seconds of the process by thread name: the JS main thread ("node"), V8's GC and
 * compiler helpers, libuv's pool and librdkafka's own threads ("rdk:..."), which a
 * --cpu-prof profile of the main thread does not see.
 */
function threadCpu(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const raw = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      // per-instance suffixes (rdk:broker1, rdk:broker-1) summed under one name
      const name = raw.slice(raw.indexOf('(') + 1, raw.lastIndexOf(')')).replace(/[-\d]+$/, '');
      const f = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
      out[name] = Math.round(((out[name] ?? 0) + (Number(f[11]) + Number(f[12])) / 100) * 100) / 100;
    } catch { /* thread gone */ }
  }
  return out;
}

async function confirmedLsn(pool: pg.Pool, slot: string): Promise<bigint> {
  const { rows } = await pool.query<{ l: string }>('SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = $1', [slot]);
  return parseLsn(rows[0]!.l);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pct = (xs: number[], p: number) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!; };

async function slotActive(pool: pg.Pool, slot: string): Promise<boolean> {
  const { rows } = await pool.query<{ a: boolean }>('SELECT active AS a FROM pg_replication_slots WHERE slot_name = $1', [slot]);
  return rows[0]?.a === true;
}

async function backlogRuns(h: Harness) {
  // One slot per run and producer, all created before the backlog, so each run drains identical WAL;
  // runs alternate between the producers so both see the same share of the machine's noise.
  const plan = Array.from({ length: RUNS }, (_, i) => (i % 2 === 0 ? TREES : [...TREES].reverse()).flatMap(({ tree, dir }) =>
    // slot names take the tree's index: names of trees are free text, slot names are not
    PRODUCERS.map((producer) => ({ tree, dir, producer, slot: `${h.id}_r${i}_${TREES.length > 1 ? `t${TREES.findIndex((x) => x.tree === tree)}_` : ''}${producer}` })))).flat();
  for (const { slot } of plan) {
    const cap = await startInProcess(h.config({ CAPTURE_SLOT: slot, TOPIC_PREFIX: slot, CAPTURE_SNAPSHOT: 'never' }));
    await cap.stop();
  }
  log(`writing a backlog of ${TOTAL} changes`);
  const t0 = Date.now();
  const { changes, endLsn } = await writeBacklog(h.pool, h.id, TOTAL, log);
  log(`backlog written: ${changes} changes in ${((Date.now() - t0) / 1000).toFixed(1)} s, WAL end ${endLsn}`);
  const end = parseLsn(endLsn);
  const runs = [];
  for (const { tree, dir, producer, slot } of plan) {
    const started = Date.now();
    const load0 = loadavg()[0]!;
    const child = spawnCapture({ ...h.env, CAPTURE_SLOT: slot, TOPIC_PREFIX: slot, CAPTURE_SNAPSHOT: 'never', CAPTURE_HEARTBEAT_MS: '0', ...benchEnv, CAPTURE_PRODUCER: producer }, dir);
    let stat = { rssPeakMiB: 0, cpuSeconds: 0 };
    // CPU spent before the slot is streaming (tsx compiling the sources, connecting) is start-up, not drain.
    let startupCpu: number | null = null;
    for (;;) {
      await sleep(100);
      stat = procStat(child.pid!);
      if (startupCpu === null && (await slotActive(h.pool, slot))) startupCpu = stat.cpuSeconds;
      // Only the transactions of the backlog commit after the slot: the slot reaches its last commit end.
      if (await confirmedLsn(h.pool, slot) >= end - 4096n) break;
      if (Date.now() - started > 900_000) throw new Error('drain did not finish in 15 minutes');
    }
    const seconds = (Date.now() - started) / 1000;
    const threads = threadCpu(child.pid!);
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    const drainCpu = stat.cpuSeconds - (startupCpu ?? 0);
    const run = {
      tree, producer, slot, seconds, changesPerSec: Math.round(changes / seconds), rssPeakMiB: stat.rssPeakMiB, cpuSeconds: stat.cpuSeconds,
      startupCpuSeconds: startupCpu, cpuSecondsPer100k: Math.round((drainCpu / changes) * 1e5 * 1000) / 1000,
      changesPerCpuSecond: Math.round(changes / drainCpu), loadavg1mBefore: load0, loadavg1mAfter: loadavg()[0]!, threadCpuSeconds: threads,
    };
    log(`run ${slot}: ${JSON.stringify(run)}`);
    runs.push(run);
    await h.pool.query('SELECT pg_drop_replication_slot($1)', [slot]).catch(() => {});
  }
  const summary = (rs: typeof runs) => ({
    seconds: median(rs.map((r) => r.seconds)), changesPerSec: median(rs.map((r) => r.changesPerSec)), rssPeakMiB: median(rs.map((r) => r.rssPeakMiB)),
    cpuSeconds: median(rs.map((r) => r.cpuSeconds)), cpuSecondsPer100k: median(rs.map((r) => r.cpuSecondsPer100k)), changesPerCpuSecond: median(rs.map((r) => r.changesPerCpuSecond)),
    rssPeakMiBMax: Math.max(...rs.map((r) => r.rssPeakMiB)),
  });
  return {
    changes,
    runs,
    trees: TREES,
    median: Object.fromEntries(TREES.flatMap(({ tree }) => PRODUCERS.map((p) => [TREES.length > 1 ? `${tree}/${p}` : p, summary(runs.filter((r) => r.producer === p && r.tree === tree))]))),
  };
}

async function latencyRun(h: Harness, producer: string) {
  const slot = `${h.id}_lat_${producer}`;
  const cap = await startInProcess(h.config({ CAPTURE_SLOT: slot, TOPIC_PREFIX: slot, CAPTURE_SNAPSHOT: 'never', ...benchEnv, CAPTURE_PRODUCER: producer }));
  const { rows } = await h.pool.query<{ m: string }>(`SELECT coalesce(max(order_id), 0)::text AS m FROM ${h.id}.orders`);
  const first = Number(rows[0]!.m);
  const runWriter = (rate: number, seconds: number, from: number) => new Promise<{ written: number; seconds: number; lastOrderId: number; commitRoundTrip: unknown }>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/capture/writer.ts', h.config().sourceUrl, h.id, String(rate), String(seconds), String(from)], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`writer exited ${code}`))));
  });
  // Warm-up: the first transactions register schemas and create topics; not part of the steady state.
  const warm = await runWriter(1000, 2, first);
  await sleep(1000);
  const m = cap.metrics;
  m.latencySamples.length = 0;
  m.latencyAt.length = 0;
  m.receiveSamples.length = 0;
  // The capture runs in this process: its event loop is this one.
  const loop = monitorEventLoopDelay({ resolution: 1 });
  const gcs: { at: number; ms: number; kind: number }[] = [];
  const gcObs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcs.push({ at: performance.timeOrigin + e.startTime, ms: e.duration, kind: (e as unknown as { detail?: { kind?: number } }).detail?.kind ?? 0 });
  });
  gcObs.observe({ entryTypes: ['gc'] });
  loop.enable();
  const cpu0 = process.cpuUsage();
  const load0 = readFileSync('/proc/loadavg', 'utf8').trim();
  const t0 = Date.now();
  const steady = await runWriter(RATE, LATENCY_SECONDS, warm.lastOrderId);
  const written = steady.written;
  const seconds = steady.seconds;
  await sleep(2000);
  loop.disable();
  gcObs.disconnect();
  const cpu = process.cpuUsage(cpu0);
  const samples = m.latencySamples.slice();
  const at = m.latencyAt.slice();
  const recv = m.receiveSamples.slice();
  await cap.stop();
  await h.pool.query('SELECT pg_drop_replication_slot($1)', [slot]).catch(() => {});
  const ms = (ns: number) => Math.round(ns / 1e4) / 100;
  // The slowest transactions, each with the longest GC pause in the 300 ms before its ack: do stalls line up with spikes?
  const worst = samples.map((v, i) => ({ v, at: at[i]! })).sort((a, b) => b.v - a.v).slice(0, 10).map(({ v, at: t }) => ({
    ms: Math.round(v * 10) / 10, atS: Math.round((t - t0) / 100) / 10,
    gcMsBefore: Math.round(Math.max(0, ...gcs.filter((g) => g.at <= t && g.at > t - 300).map((g) => g.ms)) * 10) / 10,
  }));
  const gcMs = gcs.reduce((a, g) => a + g.ms, 0);
  return {
    producer, targetRate: RATE, achievedRate: Math.round(written / seconds), transactions: samples.length,
    p50Ms: pct(samples, 50), p99Ms: pct(samples, 99), maxMs: Math.max(...samples),
    writerCommitRoundTrip: steady.commitRoundTrip,
    commitToReceive: { p50Ms: pct(recv, 50), p99Ms: pct(recv, 99), maxMs: Math.max(...recv) },
    eventLoopDelay: { p50Ms: ms(loop.percentile(50)), p99Ms: ms(loop.percentile(99)), maxMs: ms(loop.max), meanMs: ms(loop.mean) },
    gc: { count: gcs.length, totalMs: Math.round(gcMs), maxMs: Math.round(Math.max(0, ...gcs.map((g) => g.ms)) * 10) / 10, majorCount: gcs.filter((g) => g.kind === 4).length },
    cpuSecondsPer100k: Math.round(((cpu.user + cpu.system) / 1e6 / written) * 1e5 * 100) / 100,
    loadavgBefore: load0, loadavgAfter: readFileSync('/proc/loadavg', 'utf8').trim(),
    worst,
  };
}

const h = await createHarness(`bench_cap_${Date.now().toString(36)}`);
try {
  // the backlog also provides the customers and products the latency writer references
  const backlog = PHASES.has('backlog') ? await backlogRuns(h) : (await writeBacklog(h.pool, h.id, 2000), null);
  const latency = [];
  if (PHASES.has('latency')) for (const p of PRODUCERS) latency.push(await latencyRun(h, p));
  const result = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, memGiB: Math.round(totalmem() / 2 ** 30), loadavg: readFileSync('/proc/loadavg', 'utf8').trim() },
    backlog,
    latency,
  };
  mkdirSync(`${REPO}/bench-results`, { recursive: true });
  const path = process.env.BENCH_OUT ?? `${REPO}/bench-results/capture.json`;
  // keep the Debezium comparison written by bench/capture/debezium.ts
  const prior = existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : {};
  writeFileSync(path, `${JSON.stringify({ ...result, ...(prior.debezium ? { debezium: prior.debezium } : {}) }, null, 2)}\n`);
  if (backlog) log(`backlog medians: ${JSON.stringify(backlog.median)}`);
  for (const l of latency) log(`latency: ${JSON.stringify(l)}`);
} finally {
  await h.pool.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE $1 AND NOT active", [`${h.id}_%`]).catch(() => {});
  await h.cleanup();
}
