import { execSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { REPO } from '../capture/harness.ts';
import { freshness } from './freshness.ts';
import { loadavg, log } from './pipeline.ts';
import { rebuild } from './rebuild.ts';
import { throughput } from './throughput.ts';

/**
 * npm run bench:consumers [-- freshness|rebuild|throughput|all]   (default all: freshness and rebuild)
 *
 * env: BENCH_RUNS (3), BENCH_RATE orders/s (freshness 1000, throughput 3000), BENCH_SECONDS
 * (throughput: seconds of traffic per run, 30), BENCH_PROBES per run (1000),
 * BENCH_PROBE_MS (50), BENCH_WARMUP_S (10), BENCH_CUSTOMERS (100000),
 * BENCH_ORDERS (400000), BENCH_PER_TX (100), BENCH_OUT (bench-results/consumers.json),
 * BENCH_PROFILE_DIR (cpu profile of the first replay), BENCH_CHILD_LOG (child log file prefix).
 * Each section merges its result into BENCH_OUT.
 */
const mode = process.argv[2] ?? 'all';
const num = (k: string, d: number) => Number(process.env[k] ?? d);
const RUNS = num('BENCH_RUNS', 3);
const out = `${REPO}/${process.env.BENCH_OUT ?? 'bench-results/consumers.json'}`;
const stamp = Date.now().toString(36).slice(-5);

function save(section: string, value: unknown) {
  const prev = existsSync(out) ? JSON.parse(readFileSync(out, 'utf8')) : {};
  const commit = execSync('git rev-parse --short HEAD', { cwd: REPO }).toString().trim();
  const dirty = execSync('git status --porcelain -- src consumers', { cwd: REPO }).toString().trim().length > 0;
  prev.machine = { cpus: cpus().length, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version };
  prev[section] = { date: new Date().toISOString(), gitCommit: commit, srcWorkTreeDirty: dirty, loadavgAtEnd: loadavg(), ...(value as object) };
  mkdirSync(`${REPO}/bench-results`, { recursive: true });
  writeFileSync(out, `${JSON.stringify(prev, null, 2)}\n`);
}

if (mode === 'freshness' || mode === 'all') {
  const r = await freshness(`bcf_${stamp}`, {
    ordersPerSecond: num('BENCH_RATE', 1000), runs: RUNS, warmupSeconds: num('BENCH_WARMUP_S', 10),
    probes: num('BENCH_PROBES', 1000), probeMs: num('BENCH_PROBE_MS', 50), catalogCustomers: num('BENCH_CATALOG_CUSTOMERS', 10_000), generators: num('BENCH_GENERATORS', 8),
  });
  save('freshness', r);
  log(`freshness median p50 ${r.median.p50Ms} ms, p99 ${r.median.p99Ms} ms at ${r.median.ordersPerSecond} orders/s`);
}
if (mode === 'throughput') {
  const r = await throughput(`bct_${stamp}`, {
    runs: RUNS, seconds: num('BENCH_SECONDS', 30), rate: num('BENCH_RATE', 3000),
    catalogCustomers: num('BENCH_CATALOG_CUSTOMERS', 10_000), generators: num('BENCH_GENERATORS', 8),
  });
  save('throughput', r);
  log(`throughput median ${r.median.messagesPerSecond} messages/s, ${r.median.ordersPerSecond} orders/s`);
}
if (mode === 'rebuild' || mode === 'all') {
  const r = await rebuild(`bcr_${stamp}`, { customers: num('BENCH_CUSTOMERS', 100_000), orders: num('BENCH_ORDERS', 400_000), perTransaction: num('BENCH_PER_TX', 100), runs: RUNS, onRun: (partial) => save('rebuild', { complete: false, ...(partial as object) }) });
  save('rebuild', { complete: true, ...r });
  log(`rebuild median: replay ${r.median.replaySeconds} s, batch ${r.median.batchSeconds} s, ratio ${r.median.ratio}`);
}
