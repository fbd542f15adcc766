import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { runChaos } from './chaos.ts';
import { reportMarkdown } from './report.ts';
import { FAULT_KINDS, type FaultKind } from './schedule.ts';

/**
 * `npm run chaos -- --minutes N --seed S [--report PATH] [--max-faults K]`:
 * a chaos run on a throw-away stack of its own (bench/chaos/chaos.ts).
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
  .option('--report <path>', 'report path without extension (default bench-results/chaos/chaos-<seed>)')
  .option('--port-base <n>', 'first of ~20 loopback ports the run takes', whole, 43100)
  .option('--stall-bound <seconds>', 'a fault not recovered from after this long is a stall', positive, 120)
  .option('--kinds <list>', `fault kinds (default all: ${FAULT_KINDS.join(',')})`, kinds)
  .option('--orders-per-second <n>', 'shop load', positive, 6);
cmd.parse();
const o = cmd.opts<{ minutes: number; seed: number; maxFaults: number; report?: string; portBase: number; stallBound: number; kinds?: FaultKind[]; ordersPerSecond: number }>();

// Ctrl-C ends the run cleanly: the processes and the throw-away stack are stopped, the report says so.
const ac = new AbortController();
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => ac.abort());
const report = await runChaos({ signal: ac.signal, minutes: o.minutes, seed: o.seed, maxFaults: o.maxFaults, portBase: o.portBase, stallBoundMs: o.stallBound * 1000, kinds: o.kinds, ordersPerSecond: o.ordersPerSecond });
const base = o.report ?? join(REPO, 'bench-results/chaos', `chaos-${o.seed}`);
mkdirSync(dirname(base), { recursive: true });
writeFileSync(`${base}.json`, `${JSON.stringify(report, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`);
writeFileSync(`${base}.md`, reportMarkdown(report));
console.log(`chaos: ${report.ok ? 'PASSED' : 'FAILED'}; report ${base}.json and ${base}.md`);
process.exit(report.ok ? 0 : 1);
