import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * h2load (nghttp2's load generator, Debian's `nghttp2-client`) as
 * bench:lookup's paced generator for the fixed-rate phase: a C process
 * holding a rate (`--rps` per client) over HTTP/1.1 (`--h1`), so the
 * generator no longer shares the API's two cores as a Node event loop.
 *
 * How it paces, from its source (src/h2load.cc, 1.52): each client has a
 * timer of max(10 ms, 1/rps); at each tick it adds the requests due since
 * the last one to a pending count and submits as many as its in-flight
 * limit (`-m`, pipelining on HTTP/1.1) allows; the rest wait and go out as
 * answers come back. Latency is taken from the submit, never from when a
 * request was due, so it does NOT correct for coordinated omission: a
 * request held back by the in-flight limit, or by a tick that fired late
 * because h2load itself waited for a core, is not charged its wait.
 *
 * What this module does about it:
 * - clients run at no more than 100 req/s each (one request per 10 ms
 *   tick), so a tick never carries a burst, and the in-flight limit
 *   (`inFlight`) is set so that holding back needs an answer older than
 *   (inFlight - 1) ticks: `holdBackPossible` says whether the slowest
 *   answer of the run was that old. When it is false, no request waited
 *   for the limit.
 * - the run's request starts (h2load's `--log-file`: start µs, status,
 *   µs to the end of the answer, one line per request) are checked for
 *   gaps: `maxStartGapMs` is the longest time in which no request was sent
 *   at all (expected: a fraction of a millisecond at 5,000 req/s); a long
 *   gap is h2load stalled, and the requests due in it were sent late and
 *   measured from then.
 * The Node generator's due-time latency (bench/lookup/raw-client.ts) is
 * the other check; `--fixed-generators h2load,raw` runs both in one window.
 *
 * Its load shape is burstier than the raw client's (what is due every
 * 1 ms): the clients' 10 ms ticks line up, as libev reschedules a late
 * repeating timer from the present, so after a stall of h2load the clients
 * fire together (measured: most starts share their microsecond with
 * another, and the 99th-percentile gap between starts is a whole tick),
 * and after a stall of N ms each client sends N/10 requests at once.
 */

export interface H2loadOptions {
  /** http://host:port of the API. */
  url: string;
  /** Overall requests per second. */
  rate: number;
  /** Clients (connections); undefined: enough for 100 req/s each. */
  connections?: number;
  durationS: number;
  /** Requests in flight per connection (`-m`). */
  inFlight: number;
  /** The request path of each request (random customer ids); drawn `paths` times, used round-robin by each client. */
  path: () => string;
  paths?: number;
}

export interface H2loadResult {
  requests: number;
  non2xx: number;
  errors: number;
  connections: number;
  perClientRps: number;
  inFlight: number;
  /** ms from submit to complete answer, successful (2xx) requests. */
  latenciesMs: Float64Array;
  /** Whether a request could have waited for the in-flight limit (slowest answer >= (inFlight - 1) ticks). */
  holdBackPossible: boolean;
  /** Longest interval in which h2load started no request, ms. */
  maxStartGapMs: number;
  /** Gaps between consecutive starts longer than 2 ms: h2load stalls (or ticks that fired late). */
  startGapsOver2Ms: number;
  /** h2load's own CPU seconds (user + system, from the shell's `times`). */
  cpuS: number;
}

/** Each client runs at most this fast: h2load's rps timer ticks at 10 ms at the quickest. */
const MAX_PER_CLIENT_RPS = 100;
const TICK_MS = 10;

/** `times` of bash: two lines `XmY.YYYs XmY.YYYs`, the shell's and then its children's user and system time. */
export function childrenCpuS(out: string): number {
  const lines = out.slice(out.lastIndexOf('H2LOAD_TIMES') + 'H2LOAD_TIMES'.length).trim().split('\n');
  const children = lines[1] ?? '';
  let s = 0;
  for (const m of children.matchAll(/(\d+)m([\d.]+)s/g)) s += Number(m[1]) * 60 + Number(m[2]);
  return s;
}

export async function runH2load(o: H2loadOptions): Promise<H2loadResult> {
  const connections = o.connections ?? Math.max(1, Math.ceil(o.rate / MAX_PER_CLIENT_RPS));
  const perClientRps = o.rate / connections;
  const dir = await mkdtemp(join(tmpdir(), 'bench-lookup-h2load-'));
  try {
    const uris = join(dir, 'uris');
    const log = join(dir, 'requests.log');
    const base = new URL(o.url);
    const lines: string[] = [];
    for (let i = 0; i < (o.paths ?? 20_000); i++) lines.push(`${base.protocol}//${base.host}${o.path()}`);
    await writeFile(uris, `${lines.join('\n')}\n`);
    const args = ['--h1', '-t', '1', '-c', String(connections), '--rps', String(perClientRps), '-m', String(o.inFlight),
      '-D', String(o.durationS), '--log-file', log, '-i', uris];
    // bash's `times` after h2load: the children's CPU, which a Node parent cannot read once the child is gone.
    const script = 'h2load "$@"; rc=$?; echo H2LOAD_TIMES; times; exit $rc';
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn('/bin/bash', ['-c', script, 'h2load', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
      child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
      child.once('error', reject);
      child.once('exit', (code) => {
        if (code === 127 || /h2load: command not found/.test(stderr)) reject(new Error('h2load is not installed: apt-get install -y nghttp2-client'));
        else if (code !== 0) reject(new Error(`h2load exited with ${code}: ${stderr.trim() || stdout.trim()}`));
        else resolve(stdout);
      });
    });
    return { ...readLog(await readFile(log, 'utf8'), o.inFlight), connections, perClientRps, inFlight: o.inFlight, cpuS: childrenCpuS(out) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The figures of h2load's per-request log (`start_us \t status \t duration_us`, status -1 for a failed request). */
export function readLog(text: string, inFlight: number): Omit<H2loadResult, 'connections' | 'perClientRps' | 'inFlight' | 'cpuS'> {
  const rows = text.split('\n').filter((l) => l.length > 0);
  const starts = new Float64Array(rows.length);
  const lat: number[] = [];
  let non2xx = 0;
  let errors = 0;
  let slowestMs = 0;
  rows.forEach((row, i) => {
    const [start, status, duration] = row.split('\t').map(Number) as [number, number, number];
    starts[i] = start / 1000;
    const ms = duration / 1000;
    slowestMs = Math.max(slowestMs, ms);
    if (status === -1) errors++;
    else if (status < 200 || status >= 300) non2xx++;
    else lat.push(ms);
  });
  starts.sort();
  let maxGap = 0;
  let over2 = 0;
  for (let i = 1; i < starts.length; i++) {
    const gap = starts[i]! - starts[i - 1]!;
    if (gap > maxGap) maxGap = gap;
    if (gap > 2) over2++;
  }
  return {
    requests: rows.length,
    non2xx,
    errors,
    latenciesMs: Float64Array.from(lat),
    holdBackPossible: slowestMs >= (inFlight - 1) * TICK_MS,
    maxStartGapMs: Math.round(maxGap * 1000) / 1000,
    startGapsOver2Ms: over2,
  };
}
