import type { Admin } from 'kafkajs';
import { sleep } from '../../src/util/sleep.ts';
import { mastersOf, type RedisClusterView } from './redis-cluster.ts';
import type { PlannedFault } from './schedule.ts';
import { killAndWait, type Broker, type ThrowawayStack } from './stack.ts';
import type { Supervised } from './supervisor.ts';

/**
 * Injecting one planned fault. A killed pipeline process is restarted by
 * its Supervised wrapper; a killed server (Redis, a broker) is restarted
 * here the way a service manager would, with `stack.sh up <service>` after
 * the same short backoff. Resolves with the moment recovery is counted
 * from: the fault itself, or for a zombie member the SIGCONT.
 *
 * A fault on a replicated server starts from a whole cluster, as an
 * operator's next failure would: a broker is killed only once every
 * partition of the pipeline's topics has its full ISR again, a Redis master
 * only once three masters each have a replica in sync (stack.sh up waits
 * for that after every restart). Otherwise the suite would be testing a
 * double fault (two brokers out of three, or a master without a replica),
 * which stalls writes by design (min.insync.replicas=2) or loses a slot
 * range's copy.
 */
export interface FaultContext {
  stack: ThrowawayStack;
  admin: Admin;
  processes: Map<string, Supervised>;
  /** Topics whose partition leaders count when choosing a broker to kill. */
  topics: string[];
  backoffMs: number;
  /** Fault number, for alternating between the controller and the busiest leader, and for turns among Redis masters. */
  n: number;
  /** The Redis Cluster's nodes, when the stack runs one. */
  redisCluster?: RedisClusterView;
  /**
   * A killed broker or Redis master restarts while recovery is measured
   * (--lanes): the pipeline has to go on with the two brokers left, or on
   * the replica that took over; `Injected.back` says when the node is back.
   */
  restartInBackground?: boolean;
  signal?: AbortSignal;
}

export interface Injected {
  /** Recovery is measured from here. */
  from: number;
  detail: string;
  /** With restartInBackground: resolves, with a line for the detail, once the killed node is back. */
  back?: Promise<string>;
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
      await c.stack.restart('redis');
      return { from: now, detail: `SIGKILL redis-server pid ${pid}, restarted after ${Date.now() - now} ms` };
    }
    case 'kill-redis-master':
      return killRedisMaster(c);
    case 'kill-broker': {
      const isrWaitMs = c.stack.brokers > 1 ? await waitFullIsr(c, 180_000) : 0;
      const b = await chooseBroker(c);
      const at = Date.now();
      await killAndWait(b.broker.pid);
      const isr = isrWaitMs > 0 ? `, full ISR after ${isrWaitMs} ms before the kill` : '';
      const restart = async () => {
        await sleep(c.backoffMs);
        await c.stack.restart('kafka');
        return `restarted after ${Date.now() - at} ms`;
      };
      if (c.restartInBackground) return { from: at, detail: `SIGKILL broker ${b.broker.nodeId} pid ${b.broker.pid} (${b.why})${isr}`, back: restart() };
      return { from: at, detail: `SIGKILL broker ${b.broker.nodeId} pid ${b.broker.pid} (${b.why}), ${await restart()}${isr}` };
    }
    case 'pg-restart': {
      await c.stack.pgRestartImmediate();
      return { from: now, detail: `pg_ctl restart -m immediate, back after ${Date.now() - now} ms` };
    }
  }
}

/**
 * SIGKILL of the Redis master whose turn it is (masters by port, the n-th
 * modulo three: after failovers that is another node than at the start),
 * while the warehouse keeps writing CLV hashes to it; then wait until its
 * replica serves its slots as a master, then restart the node the way a
 * service manager would (`stack.sh up redis`, which returns once the
 * cluster agrees on three masters and every replica, the old master
 * among them, is in sync).
 */
async function killRedisMaster(c: FaultContext): Promise<Injected> {
  const rc = c.redisCluster;
  if (!rc) throw new Error('kill-redis-master needs a Redis Cluster stack');
  const masters = mastersOf(await rc.view());
  const withReplica = masters.filter((m) => m.replica);
  if (withReplica.length === 0) throw new Error(`no Redis master has a healthy replica (masters ${masters.map((m) => m.master.port).join(',')})`);
  const { master, replica } = withReplica[c.n % withReplica.length]!;
  const pid = c.stack.redisNodePid(master.port);
  if (pid === undefined) throw new Error(`Redis master on ${master.port} has no live pid file`);
  const at = Date.now();
  await killAndWait(pid);
  await rc.waitTakeover(master.port, replica!.id, 60_000, c.signal);
  const tookOverMs = Date.now() - at;
  const restart = async () => {
    await sleep(c.backoffMs);
    await c.stack.restart('redis');
    return `node back (a replica, in sync) after ${Date.now() - at} ms`;
  };
  const detail = `SIGKILL Redis master :${master.port} pid ${pid}; replica :${replica!.port} took over after ${tookOverMs} ms`;
  if (c.restartInBackground) return { from: at, detail, back: restart() };
  return { from: at, detail: `${detail}; ${await restart()}` };
}

/** Waits until every partition of the pipeline's topics and of __consumer_offsets has as many in-sync replicas as replicas; resolves with the time waited. */
async function waitFullIsr(c: FaultContext, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  let short = '?';
  while (Date.now() - t0 < timeoutMs && !c.signal?.aborted) {
    try {
      // The group coordinators' offsets topic too: a partition of it left with one in-sync replica goes offline with that broker.
      const internal = (await c.admin.listTopics()).filter((t) => t === '__consumer_offsets');
      const meta = await c.admin.fetchTopicMetadata({ topics: [...c.topics, ...internal] });
      const under = meta.topics.flatMap((t) => t.partitions.filter((p) => p.isr.length < p.replicas.length).map((p) => `${t.name}/${p.partitionId}`));
      if (under.length === 0) return Date.now() - t0;
      short = `${under.length} under-replicated, e.g. ${under[0]}`;
    } catch (err) {
      short = String(err);
    }
    await sleep(500);
  }
  throw new Error(`partitions not fully in sync after ${timeoutMs} ms before a broker kill (${short})`);
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
