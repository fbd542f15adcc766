import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';

/**
 * A Redis Cluster of its own for a test: the stack's own layout
 * (scripts/stack.sh with STACK_REDIS_CLUSTER=1: six nodes on basePort+1..+6,
 * bus ports +100, three masters with a replica each) under a temporary
 * state directory. Never the shared Redis.
 */
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const run = promisify(execFile);

export interface ClusterNode {
  port: number;
  role: 'master' | 'replica';
  /** For a replica, the port of its master. */
  masterPort?: number;
  slots: number;
}

export interface ThrowawayRedisCluster {
  /** Seed list for REDIS_CLUSTER_NODES. */
  nodes: string[];
  ports: number[];
  dir: string;
  env: Record<string, string>;
  /** The cluster as a live node sees it (CLUSTER NODES), failed nodes left out. */
  topology(): Promise<ClusterNode[]>;
  /** SIGKILL the redis-server on this port. */
  kill(port: number): void;
  /** `stack.sh up redis` again: restarts what is down and waits until every node agrees the cluster is ok. */
  up(): Promise<void>;
  stop(): Promise<void>;
}

export async function startThrowawayRedisCluster(basePort: number): Promise<ThrowawayRedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'throwaway-redis-cluster-'));
  const env = { ...process.env, STACK_STATE: dir, STACK_REDIS_CLUSTER: '1', STACK_REDIS_PORT: String(basePort) } as Record<string, string>;
  const stack = (cmd: string) => run('bash', [join(REPO, 'scripts/stack.sh'), cmd, 'redis'], { env, timeout: 90_000 });
  const ports = Array.from({ length: 6 }, (_, i) => basePort + 1 + i);
  const nodeDir = (port: number) => join(dir, 'redis-cluster', `node-${port - basePort}`);
  await stack('up');
  const topology = async (): Promise<ClusterNode[]> => {
    for (const p of ports) {
      const r = new Redis(p, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 500 });
      r.on('error', () => {});
      try {
        await r.connect();
        const text = (await r.call('CLUSTER', 'NODES')) as string;
        const lines = text.trim().split('\n').map((l) => l.split(' '));
        const portOf = new Map(lines.map((f) => [f[0]!, Number(f[1]!.split('@')[0]!.split(':')[1])]));
        return lines.filter((f) => !/fail|noaddr/.test(f[2]!)).map((f) => {
          const master = f[2]!.includes('master');
          const slots = f.slice(8).reduce((n, s) => {
            const [a, b] = s.split('-').map(Number);
            return s.startsWith('[') ? n : n + ((b ?? a!) - a! + 1);
          }, 0);
          return { port: portOf.get(f[0]!)!, role: master ? 'master' : 'replica', masterPort: master ? undefined : portOf.get(f[3]!), slots };
        });
      } catch {
        // this node is down: ask the next
      } finally {
        r.disconnect();
      }
    }
    throw new Error('no cluster node answers');
  };
  return {
    nodes: ports.slice(0, 3).map((p) => `127.0.0.1:${p}`),
    ports,
    dir,
    env: { STACK_REDIS_CLUSTER: '1', STACK_REDIS_PORT: String(basePort), REDIS_CLUSTER_NODES: ports.slice(0, 3).map((p) => `127.0.0.1:${p}`).join(',') },
    topology,
    kill(port: number) {
      process.kill(Number(readFileSync(join(nodeDir(port), 'redis.pid'), 'utf8').trim()), 'SIGKILL');
    },
    up: async () => {
      await stack('up');
    },
    stop: async () => {
      await stack('down').catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
