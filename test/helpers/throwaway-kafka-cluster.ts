import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/**
 * A three-node KRaft cluster of its own for a test: the stack's own layout
 * (scripts/stack.sh with STACK_KAFKA_BROKERS=3: node i broker on
 * basePort + 2(i-1), its controller on the port after, each node broker and
 * controller) under a temporary state directory. Never the shared broker.
 * KAFKA_CLUSTER_TEST_STATE=<dir> keeps the cluster there between runs (it
 * is then left running), for iterating on a test.
 */
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const run = promisify(execFile);

export interface ThrowawayKafkaCluster {
  brokers: string[];
  dir: string;
  /** Node id (1..3) of a broker port. */
  nodeOf(port: number): number;
  pid(node: number): number;
  /** SIGKILL one node (broker and controller). */
  kill(node: number): void;
  /** The active KRaft controller: the leader in the quorum-state file with the newest epoch among live nodes. */
  activeController(): number;
  /** `stack.sh up kafka` again: restarts what is down and waits until every broker sees all three. */
  up(): Promise<void>;
  stop(): Promise<void>;
}

export async function startThrowawayKafkaCluster(basePort: number): Promise<ThrowawayKafkaCluster> {
  const keep = process.env.KAFKA_CLUSTER_TEST_STATE;
  const dir = keep ?? mkdtempSync(join(tmpdir(), 'throwaway-kafka-cluster-'));
  const env = { ...process.env, STACK_STATE: dir, STACK_KAFKA_BROKERS: '3', STACK_KAFKA_PORT: String(basePort) };
  const stack = (cmd: string) => run('bash', [join(REPO, 'scripts/stack.sh'), cmd, 'kafka'], { env, timeout: 240_000 });
  await stack('up');
  const nodes = [1, 2, 3];
  const nodeDir = (n: number) => join(dir, `kafka-${n}`);
  const pid = (n: number) => Number(readFileSync(join(nodeDir(n), 'kafka.pid'), 'utf8').trim());
  const alive = (n: number) => {
    try {
      process.kill(pid(n), 0);
      return true;
    } catch {
      return false;
    }
  };
  return {
    brokers: nodes.map((n) => `127.0.0.1:${basePort + 2 * (n - 1)}`),
    dir,
    nodeOf: (port) => (port - basePort) / 2 + 1,
    pid,
    kill: (n) => process.kill(pid(n), 'SIGKILL'),
    activeController() {
      let best = { epoch: -1, leader: -1 };
      for (const n of nodes.filter(alive)) {
        const f = join(nodeDir(n), 'data', '__cluster_metadata-0', 'quorum-state');
        if (!existsSync(f)) continue;
        const q = JSON.parse(readFileSync(f, 'utf8')) as { leaderId: number; leaderEpoch: number };
        if (q.leaderEpoch > best.epoch) best = { epoch: q.leaderEpoch, leader: q.leaderId };
      }
      if (best.leader < 0) throw new Error('no live node knows a KRaft leader');
      return best.leader;
    },
    up: async () => {
      await stack('up');
    },
    stop: async () => {
      if (keep) return;
      await stack('down').catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
