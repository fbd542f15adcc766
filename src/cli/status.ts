import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import type { Env } from '../config/env.ts';
import { ConfigError, errorMessage } from '../errors.ts';
import { collectStatus, type PipelineStatus, type State, type StatusTargets } from '../health/status-collect.ts';
import { DEFAULT_PID_DIR, PROCESS_NAMES, statusTargets, type ProcessName } from '../health/status-targets.ts';

/**
 * `npm run status [-- --json]`: the whole pipeline in one table — each
 * process (up/down, pid from `.stack/app/<name>.pid`, health from its
 * /readyz), lag per consumer group (Postgres-stored offsets against Kafka
 * high watermarks), WAL the slot retains (warning above
 * CAPTURE_WAL_WARN_BYTES), dead-letter topic counts, Redis outbox depth and
 * each group's last applied batch. Settings come from the same environment
 * the processes read (TOPIC_PREFIX, CAPTURE_SLOT, CONSUMER_GROUP, *_PORT…).
 *
 * Exit codes: 0 healthy (warnings allowed, unless --strict), 1 something is
 * down or unhealthy, 2 bad configuration or arguments.
 */
export { PROCESS_NAMES, statusTargets };

export interface StatusIo {
  env?: Env;
  out?: (text: string) => void;
  err?: (text: string) => void;
}

interface Opts {
  json?: boolean;
  strict?: boolean;
  pidDir: string;
  processes: ProcessName[];
  walWarnBytes?: bigint;
  timeoutMs: number;
}

function processList(v: string): ProcessName[] {
  const names = v.split(',').map((s) => s.trim()).filter(Boolean);
  for (const n of names) if (!(PROCESS_NAMES as readonly string[]).includes(n)) throw new InvalidArgumentError(`unknown process "${n}"; one of ${PROCESS_NAMES.join(', ')}`);
  return names as ProcessName[];
}

function positive(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new InvalidArgumentError('must be a positive integer');
  return Number(v);
}

const MARK: Record<State, string> = { ok: 'ok', warn: 'WARN', unhealthy: 'UNHEALTHY', down: 'DOWN', error: 'ERROR' };

/** The human table: one row per process, group, slot, dead letters and outbox. */
export function formatStatus(s: PipelineStatus): string {
  const rows: Array<[string, string, string]> = [];
  for (const p of s.processes) rows.push([`process ${p.name}`, MARK[p.state], p.detail]);
  for (const g of s.groups) rows.push([`group ${g.group}`, MARK[g.state], `lag ${g.lag ?? '?'}; last applied ${g.lastAppliedAt ?? 'never'}${g.detail ? `; ${g.detail}` : ''}`]);
  rows.push([`slot ${s.slot.name}`, MARK[s.slot.state], s.slot.detail]);
  rows.push(['dead letters', MARK[s.deadLetters.state], `${s.deadLetters.total ?? '?'} message(s)${s.deadLetters.detail ? `; ${s.deadLetters.detail}` : ''}`]);
  rows.push(['redis outbox', MARK[s.outbox.state], `depth ${s.outbox.depth ?? '?'}; ${s.outbox.detail}`]);
  const w0 = Math.max(9, ...rows.map((r) => r[0].length));
  const w1 = Math.max(5, ...rows.map((r) => r[1].length));
  const line = (a: string, b: string, c: string) => `${a.padEnd(w0)}  ${b.padEnd(w1)}  ${c}`;
  const out = [line('COMPONENT', 'STATE', 'DETAIL'), ...rows.map((r) => line(...r))];
  out.push('', s.ok ? `pipeline healthy${s.warnings.length ? ` with ${s.warnings.length} warning(s)` : ''} (${s.checkedAt})` : `pipeline UNHEALTHY: ${s.problems.length} problem(s) (${s.checkedAt})`);
  return `${out.join('\n')}\n`;
}

/**
 * The `status` command as a function, for `npm run status` and a future
 * `shopstream status` subcommand: parses `args` (without node and script),
 * prints the table or JSON and resolves to the exit code.
 */
export async function runStatus(args: string[], io: StatusIo = {}): Promise<number> {
  const env = io.env ?? process.env;
  const out = io.out ?? ((t: string) => process.stdout.write(t));
  const err = io.err ?? ((t: string) => process.stderr.write(t));
  const program = new Command('shopstream status')
    .description('show the whole pipeline: processes, lag, slot WAL, dead letters, Redis outbox')
    .option('--json', 'print JSON instead of the table')
    .option('--strict', 'exit 1 on warnings too (WAL over the limit, dead letters)')
    .option('--pid-dir <dir>', 'where the pidfiles are', DEFAULT_PID_DIR)
    .option('--processes <list>', `processes to check (${PROCESS_NAMES.join(',')})`, processList, [...PROCESS_NAMES])
    .option('--wal-warn-bytes <n>', 'warn when the slot retains more WAL than this (default CAPTURE_WAL_WARN_BYTES, 1 GiB)', (v) => BigInt(positive(v)))
    .option('--timeout-ms <n>', 'per-check timeout', positive, 2000)
    .exitOverride()
    .configureOutput({ writeOut: out, writeErr: err });
  let opts: Opts;
  try {
    program.parse(args, { from: 'user' });
    opts = program.opts<Opts>();
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    throw e;
  }
  let targets: StatusTargets;
  try {
    targets = statusTargets(env, opts);
  } catch (e) {
    if (e instanceof ConfigError) { err(`status: config error: ${e.message}\n`); return 2; }
    throw e;
  }
  const s = await collectStatus(targets);
  if (opts.json) out(`${JSON.stringify(s, null, 2)}\n`);
  else out(formatStatus(s));
  return s.ok && !(opts.strict && s.warnings.length > 0) ? 0 : 1;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  runStatus(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e: unknown) => {
    process.stderr.write(`status: ${errorMessage(e)}\n`);
    process.exitCode = 2;
  });
}
