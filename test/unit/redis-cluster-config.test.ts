import { describe, expect, it } from 'vitest';
import { loadStackConfig } from '../../src/config/index.ts';
import { ConfigError } from '../../src/errors.ts';
import { clvDeletedKey, clvKey, clvKeyId } from '../../src/sinks/redis/clv-redis.ts';
import { describeRedis } from '../../src/sinks/redis/redis-client.ts';

describe('Redis Cluster settings', () => {
  it('is off by default, on with REDIS_CLUSTER_NODES or the stack\'s STACK_REDIS_CLUSTER', () => {
    expect(loadStackConfig({}).redisClusterNodes).toBeNull();
    expect(loadStackConfig({ REDIS_CLUSTER_NODES: 'r1:7000, r2:7001,[::1]:7002' }).redisClusterNodes).toEqual(['r1:7000', 'r2:7001', '[::1]:7002']);
    // The stack's cluster: nodes from the Redis port + 1 (scripts/stack.sh).
    expect(loadStackConfig({ STACK_REDIS_CLUSTER: '1' }).redisClusterNodes).toEqual(['127.0.0.1:56380', '127.0.0.1:56381', '127.0.0.1:56382']);
    expect(loadStackConfig({ STACK_REDIS_CLUSTER: '1', STACK_REDIS_PORT: '42100' }).redisClusterNodes).toEqual(['127.0.0.1:42101', '127.0.0.1:42102', '127.0.0.1:42103']);
    expect(loadStackConfig({ STACK_REDIS_CLUSTER: '1', REDIS_CLUSTER_NODES: 'r1:7000' }).redisClusterNodes).toEqual(['r1:7000']);
  });

  it.each(['r1', 'r1:0', ':7000', 'r1:7000,r2'])('refuses REDIS_CLUSTER_NODES=%s with one line naming it', (v) => {
    expect(() => loadStackConfig({ REDIS_CLUSTER_NODES: v })).toThrow(ConfigError);
    expect(() => loadStackConfig({ REDIS_CLUSTER_NODES: v })).toThrow(/^REDIS_CLUSTER_NODES must list Redis Cluster nodes as host:port/);
  });

  it('describes a cluster by its seeds and a single Redis without its password', () => {
    expect(describeRedis({ redisUrl: 'redis://:s3cret@h:6379', redisClusterNodes: null })).toBe('Redis at redis://:***@h:6379');
    expect(describeRedis({ redisUrl: 'redis://:s3cret@h:6379', redisClusterNodes: ['a:1', 'b:2'] })).toBe('Redis Cluster a:1,b:2');
  });
});

describe('CLV keys', () => {
  it('keep the single-Redis names and tag the customer id on a cluster, so a hash and its marker share a slot', () => {
    expect(clvKey('p:', '42')).toBe('p:clv:42');
    expect(clvDeletedKey('p:', '42')).toBe('p:clv-deleted:42');
    expect(clvKey('p:', '42', true)).toBe('p:clv:{42}');
    expect(clvDeletedKey('p:', '42', true)).toBe('p:clv-deleted:{42}');
  });

  it('reads the customer id back from either layout and nothing else', () => {
    expect(clvKeyId('p:', 'p:clv:42')).toBe('42');
    expect(clvKeyId('p:', 'p:clv:{42}')).toBe('42');
    expect(clvKeyId('p:', 'p:clv-deleted:{42}')).toBeUndefined();
    expect(clvKeyId('p:', 'p:clv:{42')).toBeUndefined();
    expect(clvKeyId('p:', 'p:clv:abc')).toBeUndefined();
    expect(clvKeyId('', 'clv:7')).toBe('7');
  });
});
