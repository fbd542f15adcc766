import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { median, round3 } from './load.ts';

/**
 * Before/after of the lookup in one session: bench:lookup (run.ts) against
 * the API of another checkout (`--before`, e.g. a `git archive` of the base
 * commit with node_modules linked in) and against this one, alternating,
 * one run per invocation, `--rounds` times each; then the medians of every
 * figure over the rounds, side by side, to one file. Alternating spreads a
 * busy neighbour over both sides instead of charging it to one.
 * Arguments after `--` go to every run.ts invocation.
 */

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const program = new Command('bench:lookup:compare')
  .requiredOption('--before <dir>', 'checkout whose API is "before"')
  .option('--rounds <n>', 'invocations per side', (v) => Number(v), 3)
  .option('--out <file>', 'results file', join(REPO, 'bench-results', 'lookup-compare.json'))
  .allowExcessArguments(true)
  .parse();
const opts = program.opts<{ before: string; rounds: number; out: string }>();
const passThrough = program.args;
const log = (m: string) => process.stderr.write(`[bench:lookup:compare] ${m}\n`);

type Medians = Record<string, Record<string, number>>;
interface RunFile { median: Medians; runs: Record<string, unknown[]>; setup: unknown }

function runOnce(side: 'before' | 'after', round: number, out: string): Promise<RunFile> {
  const args = ['--import', 'tsx', 'bench/lookup/run.ts', '--runs', '1', '--out', out, ...passThrough,
    ...(side === 'before' ? ['--api-root', opts.before] : [])];
  log(`round ${round} ${side}: node ${args.join(' ')}`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: REPO, stdio: ['ignore', 'ignore', 'inherit'] });
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`run.ts (${side}, round ${round}) exited with ${code}`));
      else readFile(out, 'utf8').then((t) => resolve(JSON.parse(t) as RunFile), reject);
    });
  });
}

/** Per phase and figure, the median over the rounds (each round's figure is its single run's). */
function mediansOver(files: RunFile[]): Medians {
  const out: Medians = {};
  for (const phase of Object.keys(files[0]?.median ?? {})) {
    out[phase] = {};
    for (const k of Object.keys(files[0]!.median[phase]!)) {
      out[phase]![k] = round3(median(files.map((f) => f.median[phase]?.[k] ?? NaN)));
    }
  }
  return out;
}

async function main(): Promise<void> {
  const dir = join(tmpdir(), `bench-lookup-compare-${process.pid}`);
  await mkdir(dir, { recursive: true });
  const sides = { before: [] as RunFile[], after: [] as RunFile[] };
  const loadAtStart = round3(loadavg()[0]!);
  for (let r = 1; r <= opts.rounds; r++) {
    // Which side goes first alternates too, so neither always follows the other's warm-up.
    const order = r % 2 === 1 ? (['before', 'after'] as const) : (['after', 'before'] as const);
    for (const side of order) sides[side].push(await runOnce(side, r, join(dir, `${side}-${r}.json`)));
  }
  const result = {
    measuredAt: new Date().toISOString(),
    method: `run.ts --runs 1 ${passThrough.join(' ')}, alternating before (API of ${opts.before}) and after (API of this checkout), ${opts.rounds} rounds; medians over rounds`,
    loadAvg1mAtStart: loadAtStart,
    loadAvg1mAtEnd: round3(loadavg()[0]!),
    median: { before: mediansOver(sides.before), after: mediansOver(sides.after) },
    rounds: sides,
  };
  await mkdir(dirname(opts.out), { recursive: true });
  await writeFile(opts.out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(JSON.stringify(result.median));
  log(`written to ${opts.out}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
