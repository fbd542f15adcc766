import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:https';
import { CLI_BIN, type CliRun } from './run-cli.ts';

/**
 * Processes of the secured end-to-end test: `shopstream <command>` children
 * whose every byte of output is kept, so the test can look for secrets in
 * all of it, and one-shot runs collected the same way.
 */
export class ProcessLogs {
  private readonly outputs: Array<{ name: string; text: () => string }> = [];
  private readonly children: Array<{ name: string; child: ChildProcess }> = [];

  /** Starts a long-running command; its output is kept under `name`. */
  start(name: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
    const child = spawn(process.execPath, [CLI_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout!.on('data', (d: Buffer) => (text += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (text += d.toString()));
    this.outputs.push({ name, text: () => text });
    this.children.push({ name, child });
    return child;
  }

  /** Runs a command to its exit (bounded by `timeoutMs`); its output is kept under `name`. */
  run(name: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 120_000): Promise<CliRun & { ms: number }> {
    const t0 = Date.now();
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [CLI_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      this.outputs.push({ name, text: () => stdout + stderr });
      // A process that neither succeeds nor exits is the retry loop this test exists to rule out.
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.on('error', reject);
      child.on('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr: code === null ? `${stderr}\n[killed after ${timeoutMs} ms]` : stderr, ms: Date.now() - t0 });
      });
    });
  }

  output(name: string): string {
    return this.outputs.filter((o) => o.name === name).map((o) => o.text()).join('\n');
  }

  all(): Array<{ name: string; text: string }> {
    return this.outputs.map((o) => ({ name: o.name, text: o.text() }));
  }

  /** SIGTERM (SIGKILL after 10 s) to the named long-running processes, or to all. */
  async stopAll(names?: string[]): Promise<void> {
    const which = this.children.filter((c) => !names || names.includes(c.name)).map((c) => c.child);
    await Promise.all(which.map((c) => new Promise<void>((resolve) => {
      if (c.exitCode !== null || c.signalCode !== null) return resolve();
      const t = setTimeout(() => c.kill('SIGKILL'), 10_000);
      c.once('exit', () => { clearTimeout(t); resolve(); });
      c.kill('SIGTERM');
    })));
  }
}

/** GET over https trusting `ca`; resolves with status and body. */
export function httpsGet(url: string, ca: Buffer, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, headers, timeout: 5_000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** The last non-empty line of a run's stderr: the one line a user sees. */
export function lastLine(r: CliRun): string {
  return r.stderr.trim().split('\n').filter(Boolean).pop() ?? '';
}
