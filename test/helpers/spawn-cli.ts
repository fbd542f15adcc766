import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { CLI_BIN } from './run-cli.ts';

/** A long-running `shopstream <args>` child whose JSON log lines can be waited for. */
export interface CliProcess {
  proc: ChildProcess;
  /** Recent stdout/stderr lines, for failure messages. */
  lines: string[];
  /** Resolves with the first JSON log line (past or future) `pred` accepts; rejects if the process exits first. */
  waitForLog(pred: (line: Record<string, unknown>) => boolean, label: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Resolves when the process exits, however it was stopped. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then the exit code and signal (SIGKILL after `timeoutMs`, reported as signal SIGKILL). */
  stop(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function spawnCli(args: string[], env: NodeJS.ProcessEnv): CliProcess {
  const proc = spawn(process.execPath, [CLI_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const parsed: Array<Record<string, unknown>> = [];
  const waiters = new Set<(j: Record<string, unknown>) => void>();
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const keep = (l: string) => {
    lines.push(l);
    if (lines.length > 400) lines.shift();
  };
  createInterface({ input: proc.stdout! }).on('line', (l) => {
    keep(l);
    let j: Record<string, unknown>;
    try { j = JSON.parse(l) as Record<string, unknown>; } catch { return; }
    parsed.push(j);
    if (parsed.length > 2000) parsed.shift();
    for (const w of waiters) w(j);
  });
  createInterface({ input: proc.stderr! }).on('line', keep);
  const tail = () => lines.slice(-25).join('\n');
  return {
    proc, lines, exited: exit,
    waitForLog(pred, label, timeoutMs = 60_000) {
      const seen = parsed.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => { waiters.delete(check); reject(new Error(`shopstream ${args.join(' ')}: no "${label}" within ${timeoutMs} ms:\n${tail()}`)); }, timeoutMs);
        const check = (j: Record<string, unknown>) => {
          if (!pred(j)) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(j);
        };
        waiters.add(check);
        void exit.then((e) => {
          if (!waiters.has(check)) return;
          clearTimeout(timer);
          waiters.delete(check);
          reject(new Error(`shopstream ${args.join(' ')} exited (${e.code ?? e.signal}) before "${label}":\n${tail()}`));
        });
      });
    },
    async stop(timeoutMs = 20_000) {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
      try {
        return await exit;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** The port of a `health listening` line (capture, consumers). */
export const healthListening = (j: Record<string, unknown>) => j.msg === 'health listening' && typeof j.port === 'number';
