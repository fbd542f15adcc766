import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type pg from 'pg';

/**
 * CPU seconds spent by one consumer process and by the Postgres backends
 * serving it, read from /proc: what a change costs, which a shared machine's
 * wall times hide. The backends are found by their client ports: the
 * consumer's TCP sockets (its /proc fds matched against /proc/net/tcp*)
 * give the local ports, pg_stat_activity the backend pid behind each port,
 * so the other engineers' consumers on the same database are not counted.
 * Postgres runs on this machine (the local stack), so its backends' /proc
 * stat is readable.
 */
const TICK_S = 1 / 100; // CLK_TCK on Linux (getconf CLK_TCK)

/** utime + stime of a pid in seconds, or undefined once it has exited. */
export function procCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which may hold spaces: state is field 3, utime 14, stime 15.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * TICK_S;
  } catch {
    return undefined;
  }
}

function socketInodes(pid: number): Set<string> {
  const out = new Set<string>();
  let fds: string[] = [];
  try { fds = readdirSync(`/proc/${pid}/fd`); } catch { return out; }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) out.add(m[1]!);
    } catch { /* closed meanwhile */ }
  }
  return out;
}

/** Local ports of `pid`'s TCP connections to `remotePort`. */
function clientPorts(pid: number, remotePort: number): number[] {
  const inodes = socketInodes(pid);
  const ports: number[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try { text = readFileSync(file, 'utf8'); } catch { continue; }
    for (const line of text.split('\n').slice(1)) {
      const c = line.trim().split(/\s+/);
      if (c.length < 10) continue;
      const local = Number.parseInt(c[1]!.split(':')[1]!, 16);
      const remote = Number.parseInt(c[2]!.split(':')[1]!, 16);
      if (remote === remotePort && inodes.has(c[9]!)) ports.push(local);
    }
  }
  return ports;
}

export interface CpuReading {
  consumerS: number;
  postgresS: number;
  backends: number;
}

/**
 * Samples a consumer and its backends. Call `sample()` often (every few
 * hundred ms) during the measured window: a backend that ends between two
 * samples loses what it spent since the last one, so the pool's idle
 * timeout (10 s) must be longer than the sampling interval.
 */
export class CpuMeter {
  private readonly backendFirst = new Map<number, number>();
  private readonly backendLast = new Map<number, number>();
  private consumerFirst: number | undefined;
  private consumerLast: number | undefined;
  private samples = 0;

  constructor(private readonly pid: number, private readonly pool: pg.Pool, private readonly pgPort: number) {}

  async sample(): Promise<void> {
    const first = this.samples++ === 0;
    const c = procCpuSeconds(this.pid);
    if (c !== undefined) {
      this.consumerFirst ??= c;
      this.consumerLast = c;
    }
    const ports = clientPorts(this.pid, this.pgPort);
    if (ports.length === 0) return;
    const { rows } = await this.pool.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE client_port = ANY($1::int[])', [ports]);
    for (const { pid } of rows) {
      const s = procCpuSeconds(pid);
      if (s === undefined) continue;
      // A backend first seen after the window opened started inside it: all its CPU counts.
      if (!this.backendFirst.has(pid)) this.backendFirst.set(pid, first ? s : 0);
      this.backendLast.set(pid, s);
    }
  }

  reading(): CpuReading {
    let postgresS = 0;
    for (const [pid, first] of this.backendFirst) postgresS += (this.backendLast.get(pid) ?? first) - first;
    return { consumerS: (this.consumerLast ?? 0) - (this.consumerFirst ?? 0), postgresS, backends: this.backendFirst.size };
  }
}

/** CPU seconds per 10,000 messages. */
export function per10k(cpuS: number, messages: number): number {
  return messages > 0 ? Math.round((cpuS / messages) * 10_000 * 1000) / 1000 : 0;
}
