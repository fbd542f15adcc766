import type { Admin } from 'kafkajs';
import { sleep } from '../../src/util/sleep.ts';
import type { PlannedFault } from './schedule.ts';
import { killAndWait, type Broker, type ThrowawayStack } from './stack.ts';
import type { Supervised } from './supervisor.ts';

/**
 * Injecting one planned fault. A killed pipeline process is restarted by
 * its Supervised wrapper; a killed server (Redis, a broker) is restarted
 * here the way a service manager would, with `stack.sh up <service>` after
 * the same short backoff. Resolves with the moment recovery is counted
 * from: the fault itself, or for a zombie member the SIGCONT.
 */
export interface FaultContext {
  stack: ThrowawayStack;
  admin: Admin;
  processes: Map<string, Supervised>;
  /** Topics whose partition leaders count when choosing a broker to kill. */
  topics: string[];
  backoffMs: number;
  /** Fault number, for alternating between the controller and the busiest leader. */
  n: number;
}

export interface Injected {
  /** Recovery is measured from here. */
  from: number;
  detail: string;
}

export async function inject(f: PlannedFault, c: FaultContext): Promise<Injected> {
  const now = Date.now();
  const proc = (name: string) => {
    const p = c.processes.get(name);
    if (!p) throw new Error(`no process ${name}`);
    return p;
  };
  switch (f.kind) {
    case 'kill-capture':
    case 'kill-consumer':
    case 'kill-api':
    case 'kill-registry': {
      const p = proc(f.target);
      const pid = p.pid;
      if (!p.signal('SIGKILL')) return { from: now, detail: `${f.target} was not running (restarting)` };
      return { from: now, detail: `SIGKILL ${f.target} pid ${pid}` };
    }
    case 'zombie-consumer': {
      const p = proc(f.target);
      const pid = p.pid;
      if (!p.signal('SIGSTOP')) return { from: now, detail: `${f.target} was not running` };
      await sleep(f.stopMs ?? 10_000);
      p.signal('SIGCONT');
      return { from: Date.now(), detail: `SIGSTOP ${f.target} pid ${pid} for ${f.stopMs} ms, then SIGCONT` };
    }
    case 'kill-redis': {
      const pid = c.stack.redisPid();
      if (pid === undefined) throw new Error('redis is not running');
      await killAndWait(pid);
      await sleep(c.backoffMs);
      await c.stack.stack('up', 'redis');
      return { from: now, detail: `SIGKILL redis-server pid ${pid}, restarted after ${Date.now() - now} ms` };
    }
    case 'kill-broker': {
      const b = await chooseBroker(c);
      await killAndWait(b.broker.pid);
      await sleep(c.backoffMs);
      await c.stack.stack('up', 'kafka');
      return { from: now, detail: `SIGKILL broker ${b.broker.nodeId} pid ${b.broker.pid} (${b.why}), restarted after ${Date.now() - now} ms` };
    }
    case 'pg-restart': {
      await c.stack.pgRestartImmediate();
      return { from: now, detail: `pg_ctl restart -m immediate, back after ${Date.now() - now} ms` };
    }
  }
}

/**
 * With one broker it is the broker. With several: on odd faults the broker
 * clients are told is the controller, on even ones the one leading the most
 * partitions of the pipeline's topics; any broker if metadata does not answer.
 */
export async function chooseBroker(c: FaultContext): Promise<{ broker: Broker; why: string }> {
  const live = c.stack.liveBrokers();
  if (live.length === 0) throw new Error('no live Kafka broker found under the stack state');
  if (live.length === 1) return { broker: live[0]!, why: 'the only broker' };
  try {
    const cluster = await c.admin.describeCluster();
    const controller = live.find((b) => b.nodeId === cluster.controller);
    if (c.n % 2 === 1 && controller) return { broker: controller, why: 'the controller' };
    const leads = new Map<number, number>();
    const meta = await c.admin.fetchTopicMetadata({ topics: c.topics });
    for (const t of meta.topics) for (const p of t.partitions) leads.set(p.leader, (leads.get(p.leader) ?? 0) + 1);
    const best = [...live].sort((a, b) => (leads.get(b.nodeId) ?? 0) - (leads.get(a.nodeId) ?? 0))[0]!;
    return { broker: best, why: `leader of ${leads.get(best.nodeId) ?? 0} partitions${best.nodeId === cluster.controller ? ', the controller' : ''}` };
  } catch {
    return { broker: live[c.n % live.length]!, why: 'metadata unavailable; by turn' };
  }
}
