import { constants, monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';

/**
 * `bench:lookup --probe`: loaded into the API process (`node --import`) to
 * see where the tail of a lookup goes while the load runs, without touching
 * the API's code: the event-loop delay (perf_hooks, 1 ms resolution, so a
 * timer is due every millisecond) and every garbage collection
 * (PerformanceObserver 'gc': kind and duration). On SIGUSR2 it prints one
 * line `API_PROBE {json}` with what it saw since the previous SIGUSR2 and
 * starts over; bench/lookup/run.ts sends one before and one after each run.
 * prom-client's default metrics hold the same in histograms too coarse for
 * a 2 ms target (10 ms loop resolution, GC buckets 1 / 10 / 100 ms).
 */

const loop = monitorEventLoopDelay({ resolution: 1 });
loop.enable();

const KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

interface GcTally { count: number; totalMs: number; maxMs: number; over1Ms: number }
let gc: Record<string, GcTally> = {};

new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const kind = KINDS[(e.detail as { kind?: number } | undefined)?.kind ?? -1] ?? 'other';
    const t = (gc[kind] ??= { count: 0, totalMs: 0, maxMs: 0, over1Ms: 0 });
    t.count++;
    t.totalMs += e.duration;
    t.maxMs = Math.max(t.maxMs, e.duration);
    if (e.duration > 1) t.over1Ms++;
  }
}).observe({ entryTypes: ['gc'] });

const ms = (ns: number) => Math.round(ns / 1e3) / 1e3;
const r3 = (n: number) => Math.round(n * 1000) / 1000;

process.on('SIGUSR2', () => {
  const out = {
    // Delay beyond the 1 ms the timer waits: how long a ready request could have waited for the loop.
    loopDelayMs: { p50: ms(loop.percentile(50)), p99: ms(loop.percentile(99)), p999: ms(loop.percentile(99.9)), max: ms(loop.max), samples: loop.count },
    gc: Object.fromEntries(Object.entries(gc).map(([k, t]) => [k, { count: t.count, totalMs: r3(t.totalMs), maxMs: r3(t.maxMs), over1Ms: t.over1Ms }])),
    heapUsedMiB: r3(process.memoryUsage().heapUsed / 2 ** 20),
  };
  process.stdout.write(`API_PROBE ${JSON.stringify(out)}\n`);
  loop.reset();
  gc = {};
});
