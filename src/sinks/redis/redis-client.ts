import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { redactUrl } from '../../config/env.ts';
import { redisClientOptions, type RedisConnection } from '../../config/redis.ts';

/**
 * One Redis client for a single server or a Redis Cluster, chosen by the
 * stack config: REDIS_CLUSTER_NODES set means ioredis' Cluster client
 * seeded with those nodes (it learns the rest, follows MOVED/ASK and a
 * failover), otherwise a plain client for REDIS_URL. Everything else in
 * the project is written against `RedisClient` and the helpers below, so
 * no caller needs to know which it has, with three rules that a cluster
 * imposes and a single server does not mind:
 *
 * - a Lua script touches keys of one hash slot only (clvKey/clvDeletedKey
 *   tag the customer id in cluster mode so a hash and its marker share one);
 * - a pipeline may only hold keys of one node, so batches of script calls
 *   go through `scriptBatch` (one pipeline on a single server, concurrent
 *   single commands on a cluster);
 * - SCAN walks one node's keys, so `scanKeys` walks every master.
 */
export type RedisClient = Redis | Cluster;

export interface RedisTarget {
  redisUrl: string;
  redisClusterNodes: string[] | null;
  /** ACL user, password and TLS files (src/config/redis.ts); without, only what the URL holds. */
  redis?: RedisConnection;
}

/** The options callers pick; each maps to its place on a plain or a cluster client. */
export interface RedisClientOptions {
  lazyConnect?: boolean;
  enableOfflineQueue?: boolean;
  maxRetriesPerRequest?: number | null;
  commandTimeout?: number;
  connectTimeout?: number;
  /** Reconnect delay after the n-th failure; the cluster client uses it for the whole cluster. */
  retryStrategy?: (times: number) => number | null;
  enableAutoPipelining?: boolean;
}

function nodeOptions(redisUrl: string): Pick<RedisOptions, 'username' | 'password' | 'tls'> {
  const u = new URL(redisUrl);
  return {
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

export function createRedisClient(target: RedisTarget, o: RedisClientOptions = {}): RedisClient {
  const conn = target.redis ?? { url: target.redisUrl };
  if (!target.redisClusterNodes) return new Redis(target.redisUrl, redisClientOptions(conn, o));
  const nodes = target.redisClusterNodes.map((n) => {
    const i = n.lastIndexOf(':');
    return { host: n.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(n.slice(i + 1)) };
  });
  const { retryStrategy, lazyConnect, enableOfflineQueue, enableAutoPipelining: _ignored, ...perNode } = o;
  return new Cluster(nodes, {
    lazyConnect,
    enableOfflineQueue,
    // Off on a cluster: after a failover, an auto-pipeline whose commands got
    // MOVED for different slots is failed as a whole and ioredis (5.11) never
    // learns the new owner from it; the redis-cluster test saw one customer's
    // write refused with MOVED for 30 s. A single command follows MOVED and
    // updates the slot map.
    enableAutoPipelining: false,
    // And the slot map is re-read every few seconds whatever happens.
    slotsRefreshInterval: 5_000,
    clusterRetryStrategy: retryStrategy ?? ((times) => Math.min(times * 200, 2_000)),
    // While a replica takes over a dead master, commands wait and retry instead of failing at once.
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 300,
    retryDelayOnTryAgain: 200,
    slotsRefreshTimeout: 2_000,
    // Reads from masters only: a replica may lag the version-guarded writes it copies.
    scaleReads: 'master',
    redisOptions: { ...perNode, ...nodeOptions(target.redisUrl), ...redisClientOptions(conn) },
  });
}

/** For log lines and errors: the URL without its password, or the cluster's seed nodes. */
export function describeRedis(target: RedisTarget): string {
  return target.redisClusterNodes ? `Redis Cluster ${target.redisClusterNodes.join(',')}` : `Redis at ${redactUrl(target.redisUrl)}`;
}

/**
 * How long a cluster write waits for a replica to confirm it (WAIT 1): a
 * master acknowledges before it replicates, so without this a master killed
 * right after a write loses it in the failover, and the outbox, which
 * deleted the row once Redis acknowledged it, would never send it again.
 * A master without a live replica costs this much per batch, then the
 * write counts as done (there is nothing to fail over to).
 */
export const REPLICA_WAIT_MS = 500;

type Pipe = Record<string, (...a: string[]) => Pipe> & { exec(): Promise<[Error | null, unknown][] | null> };

/**
 * Runs one registered script command per argument list and returns the
 * results in order; throws the first error (callers treat the whole batch as
 * not written and retry it; every script here is idempotent). On a cluster,
 * `replicated` then sends WAIT 1 on the connection of every master that may
 * have taken a write (those known before and after the writes): WAIT covers
 * everything written earlier on its connection, and one that fails (the
 * master died) fails the batch. One WAIT per master per batch, not per call:
 * WAIT blocks its connection, so one per call would serialise the batch.
 */
export async function scriptBatch(redis: RedisClient, command: string, argLists: readonly string[][], o: { replicated?: boolean } = {}): Promise<unknown[]> {
  if (argLists.length === 0) return [];
  if (redis.isCluster) {
    const cluster = redis as Cluster;
    const masters = new Set(cluster.nodes('master'));
    const fn = (cluster as unknown as Record<string, (...x: string[]) => Promise<unknown>>)[command]!;
    const settled = await Promise.allSettled(argLists.map((a) => fn.apply(cluster, a)));
    const failed = settled.find((s) => s.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    if (o.replicated) {
      for (const n of cluster.nodes('master')) masters.add(n);
      await Promise.all([...masters].map((n) => n.call('WAIT', '1', String(REPLICA_WAIT_MS))));
    }
    return settled.map((s) => (s as PromiseFulfilledResult<unknown>).value);
  }
  const pipe = redis.pipeline() as unknown as Pipe;
  for (const a of argLists) pipe[command]!(...a);
  const results = await pipe.exec();
  if (!results) throw new Error('redis pipeline returned nothing');
  const failed = results.find(([err]) => err);
  if (failed) throw failed[0];
  return results.map(([, v]) => v);
}

/** Every key matching `match` (a SCAN pattern), page by page; on a cluster, every master's in turn. */
export async function* scanKeys(redis: RedisClient, match: string, count = 1000): AsyncGenerator<string[]> {
  const nodes: Redis[] = redis.isCluster ? (redis as Cluster).nodes('master') : [redis as Redis];
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', match, 'COUNT', count);
      cursor = next;
      if (keys.length > 0) yield keys;
    } while (cursor !== '0');
  }
}

/** UNLINK for keys of any slots (a multi-key UNLINK on a cluster must stay within one slot). */
export async function unlinkKeys(redis: RedisClient, keys: readonly string[]): Promise<void> {
  if (keys.length === 0) return;
  if (redis.isCluster) await Promise.all(keys.map((k) => redis.unlink(k)));
  else await redis.unlink(...keys);
}

/** SCAN MATCH treats * ? [ ] and \ specially; a key prefix is literal. */
export function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}
