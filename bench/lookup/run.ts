import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { Redis } from 'ioredis';
import pg from 'pg';
import { rebuildRedisClv } from '../../src/api/clv-rebuild.ts';
import { loadStackConfig } from '../../src/config/index.ts';
import { redisClientOptions } from '../../src/config/redis.ts';
import { migrate } from '../../src/migrations/runner.ts';
import { generatorOf, medians, round3, runPhase, type Generator, type PhaseResult } from './load.ts';

/**
 * `npm run bench:lookup`: GET /customers/:id/clv, random ids among 10,000
 * customers whose CLV is in Redis, against the API as its own process
 * (`src/api/main.ts`, one process, as in production); the load generator
 * runs here: autocannon by default, `--generator raw`
 * (bench/lookup/raw-client.ts, evenly paced, lighter on the CPU), or
 * `--generator wrk` (bench/lookup/wrk.ts, the C generator, for the
 * closed-loop phases; the fixed-rate phase then uses the raw client, as wrk
 * cannot pace a rate), or `--generator h2load` (bench/lookup/h2load.ts, a C
 * generator that paces: the fixed-rate phase by h2load, the others by wrk).
 * `--fixed-generators h2load,raw` runs the fixed phase with each of them in
 * turn (ABBA), so the two are compared in the same window.
 * Three phases, each `--runs` times (medians go to the results file):
 *
 * - fixed: an overall 5,000 req/s over 10 connections; exact p50/p99/p99.9.
 * - max: as many requests as the API answers, over `--max-connections`
 *   connections (optionally HTTP-pipelined); throughput and latency there.
 * - calibration: the max phase against a bare node:http server answering
 *   the same bytes (bench/lookup/trivial-server.ts): the ceiling of the load
 *   generator and of Node's HTTP layer on this machine, so a max-phase
 *   figure can be read against what the machine allows at all.
 *
 * Every run records the CPU seconds per 10,000 requests of the server
 * process (from /proc) and of the generator (this process), and the load
 * average: the machine is shared, and CPU per request is the figure that
 * does not depend on the neighbours.
 *
 * Note on the fixed-rate load shape: autocannon enforces a rate per
 * connection by sending back to back until the connection's quota for the
 * current second is used, then pausing to the next second. Load therefore
 * comes in bursts at the start of each second; the raw generator sends
 * what is due every millisecond instead.
 */

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const SCHEMA = 'bench_lookup';
const PREFIX = 'bench_lookup:';

const num = (v: string) => Number(v);
const program = new Command('bench:lookup')
  .option('--runs <n>', 'measured runs of each phase', num, 3)
  .option('--phases <list>', 'phases to run, comma-separated: fixed,max,calibration', 'fixed,max,calibration')
  .option('--duration <s>', 'seconds per fixed-rate run', num, 20)
  .option('--rate <n>', 'overall requests per second of the fixed-rate phase', num, 5000)
  .option('--connections <n>', 'HTTP connections of the fixed-rate phase', num, 10)
  .option('--max-duration <s>', 'seconds per max-throughput run', num, 10)
  .option('--max-connections <n>', 'HTTP connections of the max-throughput phase', num, 32)
  .option('--pipelining <n>', 'requests in flight per connection in the max phase (HTTP/1.1 pipelining)', num, 1)
  .option('--generator <name>', 'load generator: autocannon (bursty pacing at a fixed rate), raw (bench/lookup/raw-client.ts, evenly paced) or wrk (closed-loop phases; fixed rate by raw)', 'autocannon')
  .option('--wrk-threads <n>', 'wrk threads (its -t)', num, 1)
  .option('--fixed-generators <list>', 'fixed phase only: these paced generators in turn (ABBA), e.g. h2load,raw; medians per generator')
  .option('--h2load-in-flight <n>', 'h2load: requests in flight per connection (-m)', num, 8)
  .option('--h2load-connections <n>', 'h2load: connections at the fixed rate (default: 100 req/s each)', num)
  .option('--api-node-args <args>', 'node options of the API process, space-separated (e.g. "--max-semi-space-size=32")')
  .option('--probe', 'load bench/lookup/api-probe.ts into the API: event-loop delay and GC of every run')
  .option('--api-root <dir>', 'start the API from this checkout instead of this one (a before/after comparison in one session)')
  .option('--api-env <kv...>', 'extra environment of the API process, KEY=VALUE (e.g. API_FAST_LANE=false)')
  .option('--customers <n>', 'customers seeded in Postgres and Redis', num, 10_000)
  .option('--cpu-prof <dir>', 'run the API under node --cpu-prof, profile written to <dir> when it stops')
  .option('--out <file>', 'results file', join(REPO, 'bench-results', 'lookup.json'))
  .parse();
const opts = program.opts<{
  runs: number; phases: string; duration: number; rate: number; connections: number; maxDuration: number;
  maxConnections: number; pipelining: number; generator: Generator; wrkThreads: number; customers: number; cpuProf?: string; out: string;
  apiRoot?: string; apiEnv?: string[]; fixedGenerators?: string; h2loadInFlight: number; h2loadConnections?: number;
  apiNodeArgs?: string; probe?: boolean;
}>();
const GENERATORS: Generator[] = ['raw', 'autocannon', 'wrk', 'h2load'];
const fixedGenerators = (opts.fixedGenerators?.split(',').map((g) => g.trim()) ?? [opts.generator]) as Generator[];
for (const g of [opts.generator, ...fixedGenerators]) {
  if (!GENERATORS.includes(g)) {
    process.stderr.write(`generators are raw, autocannon, wrk or h2load, got "${g}"\n`);
    process.exit(2);
  }
}
const SHAPES: Partial<Record<Generator, string>> = {
  raw: 'open loop, evenly paced: what is due every 1 ms; latency also from the due time',
  autocannon: 'autocannon overallRate: per-connection quota per second, sent back to back (bursty)',
  h2load: 'h2load --rps: 100 req/s per connection, one request per 10 ms tick each; latency from the submit (no correction for coordinated omission, see bench/lookup/h2load.ts)',
};
const phases = new Set(opts.phases.split(',').map((p) => p.trim()));
const log = (m: string) => process.stderr.write(`[bench:lookup] ${m}\n`);

async function seed(pool: pg.Pool, redis: Redis): Promise<void> {
  await pool.query(`DROP SCHEMA IF EXISTS ${SCHEMA}_stg, ${SCHEMA}_an, ${SCHEMA}_meta CASCADE`);
  await migrate(pool, 'warehouse', { schemas: { staging_schema: `${SCHEMA}_stg`, analytics_schema: `${SCHEMA}_an`, meta_schema: `${SCHEMA}_meta` } });
  await pool.query(
    `INSERT INTO ${SCHEMA}_an.customer_lifetime_value
       (customer_id, customer_key, customer_segment, total_orders, total_items, total_revenue, avg_order_value,
        first_order_date, last_order_date, customer_lifetime_days, value_segment, frequency_segment, version)
     SELECT g, md5(g::text), (ARRAY['bronze','silver','gold'])[1 + g % 3], n, n * 3, rev, round(rev / n, 2),
            now() - interval '400 days' + g * interval '1 minute', now() - (g % 365) * interval '1 day', 400 - g % 365,
            CASE WHEN rev >= 1000 THEN 'high' WHEN rev >= 250 THEN 'medium' ELSE 'low' END,
            CASE WHEN n >= 5 THEN 'loyal' WHEN n >= 2 THEN 'repeat' ELSE 'one_time' END, g
     FROM generate_series(1, $1::int) g, LATERAL (SELECT 1 + g % 9 AS n, round((g % 5000) * 1.37 + 0.99, 2) AS rev) x`,
    [opts.customers],
  );
  await clearPrefix(redis);
  const r = await rebuildRedisClv({ pool, redis, analyticsSchema: `${SCHEMA}_an`, keyPrefix: PREFIX });
  log(`seeded ${opts.customers} customers in ${SCHEMA}_an and Redis (${r.written} hashes written)`);
}

async function clearPrefix(redis: Redis): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${PREFIX}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== '0');
}

/** Starts a child and resolves with it and the first stdout line `pick` accepts. */
function startChild(args: string[], env: NodeJS.ProcessEnv, pick: (line: string) => string | undefined, cwd = REPO): Promise<{ child: ChildProcess; value: string }> {
  const child = spawn(process.execPath, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${args.at(-1)} did not start in 30 s`)), 30_000);
    child.once('exit', (code) => reject(new Error(`${args.at(-1)} exited with ${code} before listening`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const value = pick(line);
      if (value !== undefined) {
        clearTimeout(timer);
        resolve({ child, value });
      }
    });
  });
}

const apiEnv = Object.fromEntries((opts.apiEnv ?? []).map((kv) => {
  const at = kv.indexOf('=');
  if (at < 1) throw new Error(`--api-env takes KEY=VALUE, got "${kv}"`);
  return [kv.slice(0, at), kv.slice(at + 1)];
}));

const PROBE = fileURLToPath(new URL('./api-probe.ts', import.meta.url));

function startApi(): Promise<{ child: ChildProcess; value: string }> {
  const prof = opts.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${opts.cpuProf}`] : [];
  const nodeArgs = opts.apiNodeArgs?.split(' ').filter((a) => a.length > 0) ?? [];
  // The probe is this checkout's file even when the API is another's (--api-root).
  const probe = opts.probe ? ['--import', PROBE] : [];
  return startChild([...prof, ...nodeArgs, '--import', 'tsx', ...probe, 'src/api/main.ts'],
    { API_PORT: '0', ANALYTICS_SCHEMA: `${SCHEMA}_an`, REDIS_KEY_PREFIX: PREFIX, LOG_LEVEL: 'info', ...apiEnv },
    (line) => {
      if (line.startsWith(PROBE_MARK)) {
        probeLines.shift()?.(JSON.parse(line.slice(PROBE_MARK.length)) as ApiProbe);
        return undefined;
      }
      try {
        const entry = JSON.parse(line) as { msg?: string; url?: string };
        return entry.msg === 'listening' ? entry.url : undefined;
      } catch {
        // Not a log line (e.g. node's --trace-gc with --api-node-args): shown, not swallowed.
        process.stderr.write(`[api] ${line}\n`);
        return undefined;
      }
    }, opts.apiRoot ?? REPO);
}

const PROBE_MARK = 'API_PROBE ';
/** What bench/lookup/api-probe.ts prints: loop delay and GC since the previous probe. */
type ApiProbe = Record<string, unknown>;
/** Waiters for the API's next probe line, in order. */
const probeLines: ((p: ApiProbe) => void)[] = [];

/** The API's probe since the last call (SIGUSR2; api-probe.ts answers on stdout); undefined without --probe. */
async function probeApi(child: ChildProcess): Promise<ApiProbe | undefined> {
  if (!opts.probe) return undefined;
  const next = new Promise<ApiProbe | undefined>((resolve) => {
    const timer = setTimeout(() => resolve(undefined), 5_000);
    probeLines.push((p) => { clearTimeout(timer); resolve(p); });
  });
  child.kill('SIGUSR2');
  return next;
}

async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

/** xorshift32: the same id sequence every run, so runs are comparable. */
function idPaths(seed: number, max: number): () => string {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return `/customers/${1 + ((x >>> 0) % max)}/clv`;
  };
}

function ids(seed: number, max: number) {
  const h2load = { inFlight: opts.h2loadInFlight, ...(opts.h2loadConnections !== undefined ? { connections: opts.h2loadConnections } : {}) };
  return { path: idPaths(seed, max), ids: { customers: max, seed }, wrkThreads: opts.wrkThreads, h2load };
}

type Run = PhaseResult & { apiProbe?: ApiProbe };

/** `probed`: the server runs api-probe.ts (the API with --probe; never the trivial server, which SIGUSR2 would end). */
async function phase(name: string, url: string, api: ChildProcess, o: { durationS: number; connections: number; rate?: number; pipelining: number },
  generators: Generator[] = [opts.generator], probed = opts.probe === true): Promise<Run[]> {
  const runs: Run[] = [];
  for (let i = 1; i <= opts.runs; i++) {
    // ABBA: which generator goes first alternates, so neither always follows the other.
    for (const generator of i % 2 === 1 ? generators : [...generators].reverse()) {
      if (probed) await probeApi(api);
      const r: Run = await runPhase({ url, serverPid: api.pid!, generator, ...ids(0x9e3779b9 + i, opts.customers), ...o });
      const p = probed ? await probeApi(api) : undefined;
      if (p) r.apiProbe = p;
      runs.push(r);
      const due = r.fromDueMs ? ` (from due time: p99 ${r.fromDueMs.p99} ms)` : '';
      const h2 = r.h2load ? ` (h2load: hold-back possible ${r.h2load.holdBackPossible}, longest start gap ${r.h2load.maxStartGapMs} ms)` : '';
      log(`${name} ${i}/${opts.runs} (${r.generator}): ${r.throughputRps} req/s, p50 ${r.exactMs.p50} ms, p99 ${r.exactMs.p99} ms, p99.9 ${r.exactMs.p999} ms${due}${h2}; `
        + `non-2xx ${r.non2xx}, errors ${r.errors}; server CPU ${r.serverCpuSPer10k} s/10k (system ${r.serverSystemCpuSPer10k}), generator ${r.generatorCpuSPer10k} s/10k; load ${r.loadAvg1m}`
        + (p ? `; API ${JSON.stringify(p)}` : ''));
    }
  }
  return runs;
}

async function main(): Promise<void> {
  const stack = loadStackConfig();
  const pool = new pg.Pool({ connectionString: stack.warehouseUrl, max: 2 });
  const redis = new Redis(stack.redisUrl, redisClientOptions(stack.redis));
  let api: ChildProcess | undefined;
  let trivial: ChildProcess | undefined;
  const loadBefore = round3(loadavg()[0]!);
  try {
    await seed(pool, redis);
    const started = await startApi();
    api = started.child;
    const url = started.value;
    log(`API at ${url} (pid ${api.pid}); warming up 3 s`);
    await runPhase({ url, serverPid: api.pid!, generator: opts.generator, durationS: 3, connections: opts.connections, pipelining: 1, ...ids(1, opts.customers) });
    const sample = await (await fetch(`${url}/customers/1/clv`)).text();

    const maxShape = { durationS: opts.maxDuration, connections: opts.maxConnections, pipelining: opts.pipelining };
    const fixed = phases.has('fixed')
      ? await phase('fixed', url, api, { durationS: opts.duration, connections: opts.connections, rate: opts.rate, pipelining: 1 }, fixedGenerators) : [];
    const max = phases.has('max') ? await phase('max', url, api, maxShape) : [];
    const metrics = await (await fetch(`${url}/metrics`)).text();
    await stopChild(api);

    let calibration: PhaseResult[] = [];
    if (phases.has('calibration')) {
      const t = await startChild(['--import', 'tsx', 'bench/lookup/trivial-server.ts'], { BODY: sample }, (line) => (/^\d+$/.test(line) ? line : undefined));
      trivial = t.child;
      const turl = `http://127.0.0.1:${t.value}`;
      await runPhase({ url: turl, serverPid: trivial.pid!, generator: opts.generator, durationS: 2, connections: opts.maxConnections, pipelining: opts.pipelining, ...ids(1, opts.customers) });
      calibration = await phase('calibration', turl, trivial, maxShape, [opts.generator], false);
    }

    const counter = (re: RegExp) => Number(re.exec(metrics)?.[1] ?? NaN);
    const result = {
      measuredAt: new Date().toISOString(),
      setup: {
        customers: opts.customers, runs: opts.runs, node: process.version, cpus: cpus().length,
        generator: {
          fixed: fixedGenerators.map((g) => generatorOf(g, true)),
          closedLoop: generatorOf(opts.generator, false),
          wrkThreads: opts.wrkThreads, pipelining: opts.pipelining,
          ...(fixedGenerators.includes('h2load') ? { h2load: { inFlight: opts.h2loadInFlight, connections: opts.h2loadConnections ?? `${opts.rate}/100` } } : {}),
        },
        api: { root: opts.apiRoot ?? REPO, env: apiEnv, nodeArgs: opts.apiNodeArgs ?? '', probe: opts.probe === true },
        fixed: {
          rateRps: opts.rate, durationS: opts.duration, connections: opts.connections,
          loadShape: Object.fromEntries(fixedGenerators.map((g) => [generatorOf(g, true), SHAPES[generatorOf(g, true)]])),
        },
        max: { durationS: opts.maxDuration, connections: opts.maxConnections, pipelining: opts.pipelining },
        responseBytes: Buffer.byteLength(sample),
        loadAvg1mAtStart: loadBefore,
      },
      median: {
        ...(fixed.length ? { fixed: medians(fixed.filter((r) => r.generator === generatorOf(fixedGenerators[0]!, true))) } : {}),
        ...(fixedGenerators.length > 1
          ? { fixedByGenerator: Object.fromEntries(fixedGenerators.map((g) => generatorOf(g, true)).map((g) => [g, medians(fixed.filter((r) => r.generator === g))])) } : {}),
        ...(max.length ? { max: medians(max) } : {}),
        ...(calibration.length ? { calibration: medians(calibration) } : {}),
      },
      runs: { fixed, max, calibration },
      server: {
        redisHits: counter(/api_clv_redis_lookups_total\{result="hit"\} (\d+)/),
        redisMisses: counter(/api_clv_redis_lookups_total\{result="miss"\} (\d+)/),
        redisErrors: counter(/api_clv_redis_lookups_total\{result="error"\} (\d+)/),
      },
    };
    await mkdir(dirname(opts.out), { recursive: true });
    await writeFile(opts.out, `${JSON.stringify(result, null, 2)}\n`);
    console.log(JSON.stringify(result.median));
    log(`written to ${opts.out}`);
  } finally {
    await stopChild(api);
    await stopChild(trivial);
    await clearPrefix(redis).catch(() => {});
    await pool.query(`DROP SCHEMA IF EXISTS ${SCHEMA}_stg, ${SCHEMA}_an, ${SCHEMA}_meta CASCADE`).catch(() => {});
    redis.disconnect();
    await pool.end();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
