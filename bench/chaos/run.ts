import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { runChaos } from './chaos.ts';
import { reportMarkdown } from './report.ts';
import { FAULT_KINDS, stackKinds, unfitKinds, type FaultKind } from './schedule.ts';

/**
 * `npm run chaos -- --minutes N --seed S [--report PATH] [--max-faults K]
 * [--faults-per-kind K] [--brokers 3] [--redis-cluster] [--lanes]`: a chaos run on a
 * throw-away stack of its own (bench/chaos/chaos.ts, bench/chaos/README.md).
 * Writes PATH.json and PATH.md (default bench-results/chaos/chaos-<seed>);
 * exits 1 when anything was lost, counted twice, stalled or failed.
 */
const REPO = fileURLToPath(new URL('../..', import.meta.url));

function whole(v: string): number {
  if (!/^\d+$/.test(v)) throw new InvalidArgumentError('must be a whole number');
  return Number(v);
}
function positive(v: string): number {
  const n = Number(v);
  if (!(n > 0) || !Number.isFinite(n)) throw new InvalidArgumentError('must be a positive number');
  return n;
}
function gap(v: string): [number, number] {
  const m = /^(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)$/.exec(v);
  if (!m || Number(m[1]) > Number(m[2])) throw new InvalidArgumentError('must be MIN-MAX seconds, MIN <= MAX (e.g. 3-12)');
  return [Number(m[1]) * 1000, Number(m[2]) * 1000];
}
function kinds(v: string): FaultKind[] {
  const list = v.split(',').map((x) => x.trim());
  const bad = list.filter((k) => !(FAULT_KINDS as readonly string[]).includes(k));
  if (bad.length) throw new InvalidArgumentError(`unknown kind(s) ${bad.join(', ')}; kinds: ${FAULT_KINDS.join(', ')}`);
  return list as FaultKind[];
}

const cmd = new Command('chaos')
  .description('Seeded faults against the whole pipeline on a throw-away stack; a JSON + Markdown report')
  .option('--minutes <n>', 'how long faults are injected', positive, 10)
  .option('--seed <n>', 'seed of the fault schedule and the load', whole, Math.floor(Math.random() * 2 ** 31))
  .option('--max-faults <n>', 'at most this many faults', whole, 1000)
  .option('--faults-per-kind <n>', 'stop once every kind had this many faults (n rounds of the schedule)', whole)
  .option('--brokers <n>', 'Kafka brokers of the throw-away stack (1 to 4; default STACK_KAFKA_BROKERS or 1)', whole, Number(process.env.STACK_KAFKA_BROKERS ?? 1))
  .option('--redis-cluster', 'a six-node Redis Cluster instead of one redis-server (default: STACK_REDIS_CLUSTER=1)', process.env.STACK_REDIS_CLUSTER === '1')
  .option('--report <path>', 'report path without extension (default bench-results/chaos/chaos-<seed>)')
  .option('--port-base <n>', 'first of the loopback ports the run takes (P..P+15; with --redis-cluster up to P+126); below 32768, out of the ephemeral range', whole, 29000)
  .option('--lanes', 'one lane per kind (per member for kill-consumer and zombie-consumer), all at once: faults of different kinds overlap (and the throw-away servers are set up for fast restarts)', false)
  .option('--reserve <seconds>', 'no fault starts later than this before the end', positive, 60)
  .option('--stall-bound <seconds>', 'a fault not recovered from after this long is a stall', positive, 120)
  .option('--kinds <list>', `fault kinds (default all the stack offers: ${stackKinds({ redisCluster: false }).join(',')}; with --redis-cluster kill-redis-master in place of kill-redis)`, kinds)
  .option('--orders-per-second <n>', 'shop load', positive, 6)
  .option('--gap <min-max>', 'quiet seconds between a recovery and the next fault of the same lane (default 3-12, with --lanes 1-3)', gap);
cmd.parse();
const o = cmd.opts<{ minutes: number; seed: number; maxFaults: number; faultsPerKind?: number; brokers: number; redisCluster: boolean; report?: string; portBase: number; stallBound: number; kinds?: FaultKind[]; ordersPerSecond: number; gap?: [number, number]; lanes: boolean; reserve: number }>();
// Bad flags: one line naming the setting, exit 2 (before any server starts).
const unfit = o.kinds && unfitKinds(o.kinds, { redisCluster: o.redisCluster });
const bad = unfit || (!(o.brokers >= 1 && o.brokers <= 4) ? `--brokers (or STACK_KAFKA_BROKERS) must be 1 to 4 (their ports sit below the registry's), not ${o.brokers}` : undefined)
  || (o.portBase < 1024 || o.portBase + (o.redisCluster ? 127 : 16) > 65535 ? `--port-base ${o.portBase} leaves no room for the run's ports` : undefined);
if (bad) {
  console.error(`chaos: ${bad}`);
  process.exit(2);
}

// Ctrl-C ends the run cleanly: the processes and the throw-away stack are stopped, the report says so.
const ac = new AbortController();
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => ac.abort());
const report = await runChaos({ signal: ac.signal, minutes: o.minutes, seed: o.seed, maxFaults: o.maxFaults, faultsPerKind: o.faultsPerKind, brokers: o.brokers, redisCluster: o.redisCluster, portBase: o.portBase, stallBoundMs: o.stallBound * 1000, kinds: o.kinds, ordersPerSecond: o.ordersPerSecond, gapMs: o.gap, lanes: o.lanes, reserveMs: o.reserve * 1000 });
const base = o.report ?? join(REPO, 'bench-results/chaos', `chaos-${o.seed}`);
mkdirSync(dirname(base), { recursive: true });
writeFileSync(`${base}.json`, `${JSON.stringify(report, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`);
writeFileSync(`${base}.md`, reportMarkdown(report));
console.log(`chaos: ${report.ok ? 'PASSED' : 'FAILED'}; report ${base}.json and ${base}.md`);
process.exit(report.ok ? 0 : 1);
