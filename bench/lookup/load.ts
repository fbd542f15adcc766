import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import autocannon from 'autocannon';
import { runH2load } from './h2load.ts';
import { runRaw } from './raw-client.ts';
import { runWrk } from './wrk.ts';

/**
 * One load phase of bench:lookup: autocannon against a URL, with exact
 * latency percentiles (float ms from its 'response' events; its own
 * histogram cannot resolve below 1 ms) and the CPU spent by the server
 * process (from /proc, so the bench's own /metrics scrapes do not count)
 * and by the load generator (this process, or wrk's) per 10,000 requests.
 */

/**
 * wrk is closed-loop (each connection sends its next request when the last
 * is answered) and cannot pace a rate, so with `wrk` the fixed-rate runs use
 * the raw client (evenly paced, open loop) and the rest use wrk. `h2load`
 * (bench/lookup/h2load.ts) is the other way round: it paces the fixed-rate
 * runs, and wrk runs the closed-loop ones.
 */
export type Generator = 'raw' | 'autocannon' | 'wrk' | 'h2load';

/** The generator that actually makes a run's load: wrk cannot pace, h2load is only used where it does. */
export function generatorOf(g: Generator, paced: boolean): Generator {
  if (g === 'wrk' && paced) return 'raw';
  if (g === 'h2load' && !paced) return 'wrk';
  return g;
}

export interface LoadOptions {
  url: string;
  /** raw: bench/lookup/raw-client.ts (evenly paced); autocannon: per-connection quota per second, bursty. */
  generator: Generator;
  durationS: number;
  connections: number;
  /** Overall requests per second; undefined: as fast as the server answers. */
  rate?: number;
  /** Requests in flight per connection (HTTP/1.1 pipelining); 1: one at a time. */
  pipelining: number;
  /** The request path of each request (random customer ids). */
  path: () => string;
  /** The same for wrk, which draws its ids in its own Lua (bench/lookup/wrk-ids.lua): ids 1..customers from seed. */
  ids: { customers: number; seed: number };
  /** wrk threads (its -t). */
  wrkThreads?: number;
  /** h2load: requests in flight per connection (`-m`) and connections (default: 100 req/s each). */
  h2load?: { inFlight: number; connections?: number };
  /** Pid of the server process whose CPU is charged to the requests. */
  serverPid: number;
}

export interface PhaseResult {
  /** Which generator made this run's load (with `wrk`, fixed-rate runs are the raw client's). */
  generator: Generator;
  requests: number;
  throughputRps: number;
  non2xx: number;
  errors: number;
  exactMs: { p50: number; p90: number; p99: number; p999: number; max: number };
  /** raw generator at a fixed rate: latency from when each request was due (queueing behind the pacing included). */
  fromDueMs?: { p50: number; p99: number; p999: number };
  /** h2load runs: its shape and the checks of what its latency leaves out (bench/lookup/h2load.ts). */
  h2load?: { connections: number; perClientRps: number; inFlight: number; holdBackPossible: boolean; maxStartGapMs: number; startGapsOver2Ms: number };
  /** 1-minute load average when the run ended: this machine is shared, and a busy neighbour shows here. */
  loadAvg1m: number;
  /** CPU (user+system) of the server process per 10,000 answered requests. */
  serverCpuSPer10k: number;
  /** The kernel's share of it (system time: socket reads and writes, epoll). */
  serverSystemCpuSPer10k: number;
  /** CPU of the load generator (this process; wrk's own with wrk) per 10,000 requests. */
  generatorCpuSPer10k: number;
}

/** utime and stime of a process in seconds (clock ticks of 1/100 s on Linux). */
export function processCpuSeconds(pid: number): { user: number; system: number } {
  // The command name may contain spaces; the fields after it do not.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 };
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

export const round3 = (n: number) => Math.round(n * 1000) / 1000;

function pcts(sorted: Float64Array) {
  return {
    p50: round3(percentile(sorted, 0.5)),
    p90: round3(percentile(sorted, 0.9)),
    p99: round3(percentile(sorted, 0.99)),
    p999: round3(percentile(sorted, 0.999)),
    max: round3(sorted[sorted.length - 1] ?? NaN),
  };
}

interface Measured {
  requests: number;
  non2xx: number;
  errors: number;
  /** Every response's latency, or (wrk) the percentiles its histogram gives, in ms. */
  latencies: Float64Array | PhaseResult['exactMs'];
  fromDue?: Float64Array;
  /** CPU seconds of a generator that is its own process (wrk, h2load). */
  generatorCpuS?: number;
  h2load?: PhaseResult['h2load'];
}

async function autocannonLoad(o: LoadOptions): Promise<Measured> {
  const times: number[] = [];
  const instance = autocannon({
    url: o.url,
    duration: o.durationS,
    connections: o.connections,
    pipelining: o.pipelining,
    ...(o.rate !== undefined ? { overallRate: o.rate } : {}),
    requests: [{ method: 'GET', setupRequest: (req: Record<string, unknown>) => ({ ...req, path: o.path() }) }],
  });
  instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
    if (status >= 200 && status < 300) times.push(ms);
  });
  const r = await instance;
  return { requests: r.requests.total, non2xx: r.non2xx, errors: r.errors + r.timeouts, latencies: Float64Array.from(times) };
}

async function rawLoad(o: LoadOptions): Promise<Measured> {
  const u = new URL(o.url);
  const r = await runRaw({
    host: u.hostname, port: Number(u.port), connections: o.connections, durationS: o.durationS,
    rate: o.rate, pipelining: o.pipelining, path: o.path,
  });
  return { requests: r.requests, non2xx: r.non2xx, errors: r.errors, latencies: r.latenciesMs, ...(o.rate !== undefined ? { fromDue: r.dueLatenciesMs } : {}) };
}

async function wrkLoad(o: LoadOptions): Promise<Measured> {
  if (o.pipelining !== 1) throw new Error('--generator wrk sends one request at a time per connection (no --pipelining)');
  const r = await runWrk({ url: o.url, connections: o.connections, durationS: o.durationS, threads: o.wrkThreads ?? 1, ...o.ids });
  const ms = (us: number) => round3(us / 1000);
  const l = r.latencyUs;
  return {
    requests: r.requests, non2xx: r.errors.status, errors: r.errors.connect + r.errors.read + r.errors.write + r.errors.timeout,
    latencies: { p50: ms(l.p50), p90: ms(l.p90), p99: ms(l.p99), p999: ms(l.p999), max: ms(l.max) },
    generatorCpuS: r.cpuS.user + r.cpuS.system,
  };
}

async function h2loadLoad(o: LoadOptions): Promise<Measured> {
  if (o.rate === undefined) throw new Error('h2load is only used at a fixed rate');
  const r = await runH2load({
    url: o.url, rate: o.rate, durationS: o.durationS, path: o.path,
    inFlight: o.h2load?.inFlight ?? 8, ...(o.h2load?.connections !== undefined ? { connections: o.h2load.connections } : {}),
  });
  return {
    requests: r.requests, non2xx: r.non2xx, errors: r.errors, latencies: r.latenciesMs, generatorCpuS: r.cpuS,
    h2load: {
      connections: r.connections, perClientRps: r.perClientRps, inFlight: r.inFlight,
      holdBackPossible: r.holdBackPossible, maxStartGapMs: r.maxStartGapMs, startGapsOver2Ms: r.startGapsOver2Ms,
    },
  };
}

export async function runPhase(o: LoadOptions): Promise<PhaseResult> {
  const serverBefore = processCpuSeconds(o.serverPid);
  const genBefore = process.cpuUsage();
  const generator = generatorOf(o.generator, o.rate !== undefined);
  const r = generator === 'raw' ? await rawLoad(o) : generator === 'wrk' ? await wrkLoad(o)
    : generator === 'h2load' ? await h2loadLoad(o) : await autocannonLoad(o);
  const genOwn = process.cpuUsage(genBefore);
  const genCpuS = r.generatorCpuS ?? (genOwn.user + genOwn.system) / 1e6;
  const serverAfter = processCpuSeconds(o.serverPid);
  const serverCpu = serverAfter.user + serverAfter.system - serverBefore.user - serverBefore.system;
  const answered = Math.max(1, r.requests);
  const due = r.fromDue && pcts(r.fromDue.sort());
  return {
    generator,
    requests: r.requests,
    throughputRps: round3(r.requests / o.durationS),
    non2xx: r.non2xx,
    errors: r.errors,
    exactMs: r.latencies instanceof Float64Array ? pcts(r.latencies.sort()) : r.latencies,
    ...(due ? { fromDueMs: { p50: due.p50, p99: due.p99, p999: due.p999 } } : {}),
    ...(r.h2load ? { h2load: r.h2load } : {}),
    loadAvg1m: round3(loadavg()[0]!),
    serverCpuSPer10k: round3((serverCpu * 10_000) / answered),
    serverSystemCpuSPer10k: round3(((serverAfter.system - serverBefore.system) * 10_000) / answered),
    generatorCpuSPer10k: round3((genCpuS * 10_000) / answered),
  };
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Medians over runs of every figure a phase reports. */
export function medians(runs: PhaseResult[]) {
  const m = (f: (r: PhaseResult) => number) => median(runs.map(f));
  return {
    throughputRps: m((r) => r.throughputRps),
    p50Ms: m((r) => r.exactMs.p50),
    p99Ms: m((r) => r.exactMs.p99),
    p999Ms: m((r) => r.exactMs.p999),
    ...(runs.every((r) => r.fromDueMs) ? { fromDueP99Ms: m((r) => r.fromDueMs!.p99) } : {}),
    serverCpuSPer10k: m((r) => r.serverCpuSPer10k),
    serverSystemCpuSPer10k: m((r) => r.serverSystemCpuSPer10k),
    generatorCpuSPer10k: m((r) => r.generatorCpuSPer10k),
    loadAvg1m: m((r) => r.loadAvg1m),
    non2xx: runs.reduce((a, r) => a + r.non2xx, 0),
    errors: runs.reduce((a, r) => a + r.errors, 0),
  };
}
