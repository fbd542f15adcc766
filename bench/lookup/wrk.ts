import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * wrk (a C load generator, `apt-get install wrk`) as bench:lookup's
 * closed-loop generator: far lighter per request than autocannon or the raw
 * client, so on two shared cores more of the machine is left to the server
 * measured. Ids come from bench/lookup/wrk-ids.lua, which also prints the
 * counts, latency percentiles (µs, from wrk's histogram) and wrk's own CPU.
 */

export interface WrkOptions {
  url: string;
  connections: number;
  durationS: number;
  threads: number;
  customers: number;
  seed: number;
}

export interface WrkResult {
  requests: number;
  durationUs: number;
  /** `status`: answers with a status of 400 or more. */
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  latencyUs: { p50: number; p90: number; p99: number; p999: number; max: number };
  cpuS: { user: number; system: number };
}

const SCRIPT = fileURLToPath(new URL('./wrk-ids.lua', import.meta.url));

export function runWrk(o: WrkOptions): Promise<WrkResult> {
  const args = ['-t', String(o.threads), '-c', String(Math.max(o.connections, o.threads)), '-d', `${o.durationS}s`,
    '--timeout', '5s', '-s', SCRIPT, o.url, '--', String(o.customers), String(o.seed >>> 0)];
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.once('error', (e) => reject(new Error(`wrk could not start (${e.message}); install it: apt-get install -y wrk`)));
    child.once('exit', (code) => {
      const line = /^WRK_RESULT (.*)$/m.exec(out)?.[1];
      if (code !== 0 || line === undefined) {
        reject(new Error(`wrk exited with ${code}: ${err.trim() || out.trim()}`));
        return;
      }
      resolve(JSON.parse(line) as WrkResult);
    });
  });
}
