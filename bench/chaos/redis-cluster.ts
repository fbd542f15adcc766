import { Redis } from 'ioredis';
import { sleep } from '../../src/util/sleep.ts';

/**
 * The chaos run's view of its Redis Cluster (scripts/stack.sh with
 * STACK_REDIS_CLUSTER=1: six nodes, three masters with a replica each),
 * read from the nodes themselves with CLUSTER NODES, so that a fault can
 * pick whichever node is a master now (after a few failovers that is no
 * longer the first three) and see its replica take its slots over.
 */
export interface ClusterNodeView {
  id: string;
  port: number;
  role: 'master' | 'replica';
  /** For a replica, the id of its master. */
  masterId?: string;
  /** Slot count it serves (a master). */
  slots: number;
  /** Flagged fail or pfail by the node answering. */
  failing: boolean;
}

/** CLUSTER NODES text -> one entry per line (pure; unit-tested). */
export function parseClusterNodes(text: string): ClusterNodeView[] {
  return text.trim().split('\n').filter((l) => l.trim() !== '').map((line) => {
    const f = line.trim().split(' ');
    const flags = f[2] ?? '';
    const addr = f[1] ?? '';
    const port = Number(addr.split('@')[0]!.slice(addr.split('@')[0]!.lastIndexOf(':') + 1));
    const master = flags.split(',').includes('master');
    // Slots from field 9 on: "0-5460", "5461", or "[5461->-id]" while migrating (not served here yet).
    const slots = f.slice(8).reduce((n, s) => {
      if (s.startsWith('[')) return n;
      const [a, b] = s.split('-').map(Number);
      return n + ((b ?? a!) - a! + 1);
    }, 0);
    return { id: f[0]!, port, role: master ? 'master' : 'replica', masterId: master || f[3] === '-' ? undefined : f[3], slots, failing: /(^|,)p?fail(\?)?(,|$)/.test(flags) };
  });
}

/** The masters serving slots in a view, by port, and the replica of each (if one is healthy). */
export function mastersOf(view: readonly ClusterNodeView[]): Array<{ master: ClusterNodeView; replica?: ClusterNodeView }> {
  return view
    .filter((n) => n.role === 'master' && n.slots > 0 && !n.failing)
    .sort((a, b) => a.port - b.port)
    .map((master) => ({ master, replica: view.find((n) => n.role === 'replica' && n.masterId === master.id && !n.failing) }));
}

export class RedisClusterView {
  constructor(readonly ports: readonly number[]) {}

  /** CLUSTER NODES as the first node that answers sees it, leaving out `skip` (a node just killed). */
  async view(skip?: number): Promise<ClusterNodeView[]> {
    for (const port of this.ports) {
      if (port === skip) continue;
      const r = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000, commandTimeout: 2000 });
      r.on('error', () => {});
      try {
        await r.connect();
        return parseClusterNodes((await r.call('CLUSTER', 'NODES')) as string);
      } catch {
        // down or not answering: ask the next
      } finally {
        r.disconnect();
      }
    }
    throw new Error(`no Redis Cluster node answers on ports ${this.ports.join(',')}`);
  }

  /**
   * Waits until the dead master's replica (`heirId`) serves slots as a
   * master, as a surviving node sees it: the failover happened.
   */
  async waitTakeover(deadPort: number, heirId: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline && !signal?.aborted) {
      try {
        const heir = (await this.view(deadPort)).find((n) => n.id === heirId);
        if (heir && heir.role === 'master' && heir.slots > 0 && !heir.failing) return;
        last = heir ? `${heir.role}, ${heir.slots} slots${heir.failing ? ', failing' : ''}` : 'not in the view';
      } catch (err) {
        last = String(err);
      }
      await sleep(100);
    }
    throw new Error(`the replica of Redis node ${deadPort} did not take over in ${timeoutMs} ms (replica ${heirId.slice(0, 8)}: ${last})`);
  }
}
