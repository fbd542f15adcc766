import { describe, expect, it } from 'vitest';
import { mastersOf, parseClusterNodes } from '../../bench/chaos/redis-cluster.ts';
import { FAULT_KINDS, stackKinds, unfitKinds } from '../../bench/chaos/schedule.ts';

// CLUSTER NODES as redis-server 7 prints it, seen from node 44022 after 44021 was killed and 44024 took over.
const AFTER_FAILOVER = [
  'a1 127.0.0.1:44021@44121 master,fail - 1700000000000 1700000000000 1 disconnected',
  'b2 127.0.0.1:44022@44122 myself,master - 0 0 2 connected 5461-10922',
  'c3 127.0.0.1:44023@44123 master - 0 1700000000001 3 connected 10923-16383',
  'd4 127.0.0.1:44024@44124 master - 0 1700000000002 7 connected 0-5460',
  'e5 127.0.0.1:44025@44125 slave b2 0 1700000000003 2 connected',
  'f6 127.0.0.1:44026@44126 slave c3 0 1700000000004 3 connected',
].join('\n');

describe('chaos Redis Cluster view', () => {
  it('parses roles, masters of replicas, slot counts and failure flags', () => {
    const v = parseClusterNodes(`${AFTER_FAILOVER}\n`);
    expect(v.map((n) => [n.port, n.role, n.slots, n.failing])).toEqual([
      [44021, 'master', 0, true], [44022, 'master', 5462, false], [44023, 'master', 5461, false],
      [44024, 'master', 5461, false], [44025, 'replica', 0, false], [44026, 'replica', 0, false],
    ]);
    expect(v.find((n) => n.port === 44025)!.masterId).toBe('b2');
    expect(v.find((n) => n.port === 44022)!.masterId).toBeUndefined();
  });

  it('counts single slots, ignores migrating ones, and flags pfail', () => {
    const [n] = parseClusterNodes('x 127.0.0.1:7000@17000 master,pfail? - 0 0 1 connected 0-9 20 [21->-y]');
    expect(n).toMatchObject({ slots: 11, failing: true });
  });

  it('lists the masters serving slots with their healthy replica: the dead master is gone, the new one has none yet', () => {
    const m = mastersOf(parseClusterNodes(AFTER_FAILOVER));
    expect(m.map((x) => [x.master.port, x.replica?.port])).toEqual([[44022, 44025], [44023, 44026], [44024, undefined]]);
  });
});

describe('chaos fault kinds per stack', () => {
  it('offers the Redis server kill with a single Redis and the master kill with a cluster, everything else on both', () => {
    expect(stackKinds({ redisCluster: false })).not.toContain('kill-redis-master');
    expect(stackKinds({ redisCluster: false })).toContain('kill-redis');
    expect(stackKinds({ redisCluster: true })).toContain('kill-redis-master');
    expect(stackKinds({ redisCluster: true })).not.toContain('kill-redis');
    expect(stackKinds({ redisCluster: true }).length).toBe(FAULT_KINDS.length - 1);
    expect(stackKinds({ redisCluster: true })).toContain('kill-broker');
  });

  it('names the kinds a stack cannot take', () => {
    expect(unfitKinds(['kill-redis', 'pg-restart'], { redisCluster: false })).toBeUndefined();
    expect(unfitKinds(['kill-redis', 'pg-restart'], { redisCluster: true })).toMatch(/^--kinds kill-redis needs a single Redis/);
    expect(unfitKinds(['kill-redis-master'], { redisCluster: false })).toMatch(/^--kinds kill-redis-master needs a Redis Cluster/);
  });
});
