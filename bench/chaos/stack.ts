import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, readlinkSync, realpathSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/**
 * The chaos suite's own throw-away stack: scripts/stack.sh with STACK_STATE
 * and every STACK_*_PORT moved into the given range, so its servers can be
 * killed without touching the shared stack. The schema registry is not
 * started here: it runs as a supervised child like the pipeline processes.
 *
 * Kafka brokers are found from their pid files under the state directory
 * (kafka.pid for the single broker; one per broker when the stack runs
 * STACK_KAFKA_BROKERS brokers), each with the node.id of the properties
 * file on its command line, so the suite needs no knowledge of the layout.
 * With a Redis Cluster (STACK_REDIS_CLUSTER=1) its six nodes listen on the
 * Redis port + 1..6 (bus ports + 100), each with its pid file under
 * redis-cluster/node-N.
 */
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const run = promisify(execFile);

export interface StackPorts {
  pg: number;
  redis: number;
  kafka: number;
  kafkaController: number;
  registry: number;
}

export interface StackShape {
  brokers: number;
  redisCluster: boolean;
}

export interface Broker {
  nodeId: number;
  pid: number;
  pidFile: string;
}

export class ThrowawayStack {
  readonly env: Record<string, string>;

  readonly brokers: number;
  readonly redisCluster: boolean;

  /** `tuning`: more STACK_* settings (scripts/stack.sh), e.g. the fast-restart ones of a lanes run. */
  constructor(readonly state: string, readonly ports: StackPorts, shape: StackShape = { brokers: 1, redisCluster: false }, tuning: Record<string, string> = {}) {
    this.brokers = shape.brokers;
    this.redisCluster = shape.redisCluster;
    this.env = {
      STACK_STATE: state, STACK_PG_PORT: String(ports.pg), STACK_REDIS_PORT: String(ports.redis), STACK_KAFKA_PORT: String(ports.kafka),
      STACK_KAFKA_CONTROLLER_PORT: String(ports.kafkaController), STACK_REGISTRY_PORT: String(ports.registry), STACK_KAFKA_BROKERS: String(shape.brokers),
      // Explicit either way: a STACK_REDIS_CLUSTER in the caller's shell must not change this stack.
      STACK_REDIS_CLUSTER: shape.redisCluster ? '1' : '0',
      ...tuning,
    };
  }

  /** The six Redis Cluster node ports (the Redis port + 1..6); empty with a single Redis. */
  get redisNodePorts(): number[] {
    return this.redisCluster ? Array.from({ length: 6 }, (_, i) => this.ports.redis + 1 + i) : [];
  }

  /** Pid of the Redis Cluster node on this port, if it runs. */
  redisNodePid(port: number): number | undefined {
    return livePid(join(this.state, 'redis-cluster', `node-${port - this.ports.redis}`, 'redis.pid'));
  }

  get urls() {
    const p = this.ports;
    return {
      source: `postgres://postgres@127.0.0.1:${p.pg}/shop`, warehouse: `postgres://postgres@127.0.0.1:${p.pg}/warehouse`,
      registryDb: `postgres://postgres@127.0.0.1:${p.pg}/registry`, registry: `http://127.0.0.1:${p.registry}`,
      redis: `redis://127.0.0.1:${p.redis}`, kafka: this.bootstrap(),
      /** REDIS_CLUSTER_NODES: the first three nodes as seeds (the client learns the rest); null with a single Redis. */
      redisClusterNodes: this.redisCluster ? this.redisNodePorts.slice(0, 3).map((x) => `127.0.0.1:${x}`) : null,
    };
  }

  /** Bootstrap list: with several brokers stack.sh puts node k (from 1) on STACK_KAFKA_PORT + 2(k - 1), its controller on the port after. */
  private bootstrap(): string {
    return Array.from({ length: this.brokers }, (_, k) => `127.0.0.1:${this.ports.kafka + 2 * k}`).join(',');
  }

  /** `stack.sh <args>` on this stack (async: the suite's load and probes keep running meanwhile). */
  async stack(...args: string[]): Promise<string> {
    return this.stackWith({}, ...args);
  }

  /**
   * `stack.sh up <service>` after a kill, as a service manager would, under
   * a lock of that service's own: a broker and a Redis node killed in two
   * lanes restart at the same time, not one after the other.
   */
  restart(service: 'redis' | 'kafka'): Promise<string> {
    return this.stackWith({ STACK_LOCK_NAME: `stack-${service}` }, 'up', service);
  }

  private async stackWith(env: Record<string, string>, ...args: string[]): Promise<string> {
    try {
      const r = await run('bash', [join(REPO, 'scripts/stack.sh'), ...args], { env: { ...process.env, ...this.env, ...env }, timeout: 300_000, maxBuffer: 16 << 20 });
      return r.stdout;
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`stack.sh ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
    }
  }

  up(): Promise<string> {
    return this.stack('up', 'postgres', 'redis', 'kafka');
  }

  /** Stops every server; removes the state too unless `keep` (a failed comparison: its rows stay to be looked at). */
  async down(keep = false): Promise<void> {
    await this.stack('down', 'postgres', 'redis', 'kafka').catch((err) => console.error(String(err)));
    if (keep) return;
    let pgDir: string | undefined;
    try {
      pgDir = readlinkSync(join(this.state, 'pg'));
    } catch {
      // a directory, not a link
    }
    if (pgDir) rmSync(pgDir, { recursive: true, force: true });
    rmSync(this.state, { recursive: true, force: true });
  }

  redisPid(): number | undefined {
    return livePid(join(this.state, 'redis/redis.pid'));
  }

  /** Every live broker of the stack, by node id. */
  liveBrokers(): Broker[] {
    const out: Broker[] = [];
    for (const file of findPidFiles(this.state)) {
      const pid = livePid(file);
      if (pid === undefined) continue;
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (!cmd.includes('kafka.Kafka')) continue;
      const props = cmd[cmd.indexOf('kafka.Kafka') + 1];
      const m = props && existsSync(props) ? /^node\.id=(\d+)/m.exec(readFileSync(props, 'utf8')) : null;
      out.push({ nodeId: m ? Number(m[1]) : 1, pid, pidFile: file });
    }
    return out.sort((a, b) => a.nodeId - b.nodeId);
  }

  /** Immediate-mode restart (no checkpoint, crash recovery on start) of the cluster holding the warehouse database. */
  async pgRestartImmediate(): Promise<void> {
    const real = realpathSync(join(this.state, 'pg'));
    const data = join(real, 'data');
    const ctl = ['/usr/lib/postgresql/15/bin/pg_ctl', '-D', data, '-l', join(real, 'postgres.log'), '-m', 'immediate', '-w', '-t', '120', 'restart'];
    const asPg = process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', ...ctl]] as const : [ctl[0]!, ctl.slice(1)] as const;
    // From /: the checkout may be out of the postgres user's reach (as stack.sh does).
    await run(asPg[0], [...asPg[1]], { cwd: '/', timeout: 180_000 });
  }
}

/** Pid files of brokers: kafka.pid files anywhere under a kafka* directory of the state. */
function findPidFiles(state: string): string[] {
  const out: string[] = [];
  const walk = (dir: string, depth: number) => {
    let entries: string[];
    try {
      entries = readdirSync(dir);
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(dir, e);
      if (e.endsWith('.pid') && e.startsWith('kafka')) out.push(p);
      else if (depth < 2 && (depth > 0 || e.startsWith('kafka')) && !e.startsWith('data') && !e.startsWith('logs')) {
        try {
          if (statSync(p).isDirectory()) walk(p, depth + 1);
        } catch {
          // vanished
        }
      }
    }
  };
  walk(state, 0);
  return out;
}

function livePid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Alive and not a zombie: a killed server (setsid, so not our child) waits for init to reap it. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** SIGKILL and wait until the process is gone (a killed server must be dead before it is restarted). */
export async function killAndWait(pid: number, timeoutMs = 30_000): Promise<void> {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!alive(pid)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`pid ${pid} still alive ${timeoutMs} ms after SIGKILL`);
}
