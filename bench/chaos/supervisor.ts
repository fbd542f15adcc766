import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The pipeline processes of a chaos run, each restarted the way a process
 * supervisor (systemd Restart=always, Kubernetes) would: after it exits, for
 * whatever reason, a short backoff, then again, until stop(). Output goes
 * to one log file per process under the run's directory.
 */
const REPO = fileURLToPath(new URL('../..', import.meta.url));

export interface ProcessSpec {
  name: string;
  /** Entry file relative to the repository. */
  main: string;
  env: NodeJS.ProcessEnv;
  /** Port of its /healthz /readyz /metrics (the API and the registry: their HTTP port). */
  healthPort: number;
}

export interface ExitRecord {
  at: number;
  code: number | null;
  signal: string | null;
}

export class Supervised {
  child: ChildProcess | undefined;
  readonly exits: ExitRecord[] = [];
  starts = 0;
  private stopping = false;
  private timer: NodeJS.Timeout | undefined;
  readonly log: string;

  constructor(readonly spec: ProcessSpec, dir: string, private readonly backoffMs = 1000) {
    this.log = join(dir, `${spec.name}.log`);
  }

  get name(): string {
    return this.spec.name;
  }

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  start(): void {
    this.stopping = false;
    const fd = openSync(this.log, 'a');
    const child = spawn(process.execPath, ['--import', 'tsx', join(REPO, this.spec.main)], { cwd: REPO, env: this.spec.env, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    this.starts += 1;
    this.child = child;
    child.once('exit', (code, signal) => {
      this.exits.push({ at: Date.now(), code, signal });
      if (this.stopping) return;
      this.timer = setTimeout(() => {
        this.timer = undefined;
        if (!this.stopping) this.start();
      }, this.backoffMs);
    });
  }

  signal(sig: NodeJS.Signals): boolean {
    const c = this.child;
    if (!c || !this.running) return false;
    return c.kill(sig);
  }

  /** Exits seen that neither the suite caused (SIGKILL) nor a clean stop explains: a crash of the process itself. */
  unexpectedExits(): ExitRecord[] {
    return this.exits.filter((e) => e.signal !== 'SIGKILL' && !(this.stopping && e.code === 0));
  }

  /** Ends the process (SIGTERM, SIGKILL after the timeout) and no restart follows; safe twice. */
  async stop(timeoutMs = 20_000): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    const c = this.child;
    if (!c || !this.running) return;
    c.kill('SIGCONT');
    const gone = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    await gone;
    clearTimeout(t);
  }

  tail(lines = 20): string {
    try {
      return readFileSync(this.log, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }
}
