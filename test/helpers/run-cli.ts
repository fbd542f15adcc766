import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The package's bin, run as a user would: `node bin/shopstream.js …`. */
export const CLI_BIN = fileURLToPath(new URL('../../bin/shopstream.js', import.meta.url));

export interface CliRun { code: number | null; stdout: string; stderr: string }

/** Runs `shopstream <args>` to its exit with `env`, collecting its output. */
export function runCli(args: string[], env: NodeJS.ProcessEnv, cwd?: string): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_BIN, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
