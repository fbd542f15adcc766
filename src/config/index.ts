import { ConfigError } from '../errors.ts';
import { bool, hostPortList, int, optionalStr, str, url, type Env } from './env.ts';
import { loadKafkaConnection, type KafkaConnection } from './kafka.ts';
import { loadRedisConnection, type RedisConnection } from './redis.ts';
import { loadRegistryConnection, type RegistryConnection } from './registry.ts';

/**
 * Connection settings shared by every process. Defaults point at the local
 * stack that `npm run stack:up` starts (ports in docs/stack.md); the same
 * ports are mapped by docker-compose.yml. A throw-away stack started with
 * STACK_PG_PORT / STACK_KAFKA_PORT / STACK_REGISTRY_PORT / STACK_REDIS_PORT
 * moves those defaults with it, so every process and command (the demo's,
 * `status`, `verify`) finds it without the URLs being set as well.
 */
export interface StackConfig {
  /** The operational (source) database, where the replication slot lives. */
  sourceUrl: string;
  /** The warehouse database holding the staging and analytics schemas. */
  warehouseUrl: string;
  kafkaBrokers: string[];
  registryUrl: string;
  redisUrl: string;
  /**
   * Seed nodes of a Redis Cluster (REDIS_CLUSTER_NODES); null for a single
   * Redis at `redisUrl`. With a cluster, `redisUrl` still lends its
   * credentials and scheme (rediss: for TLS) to every node.
   */
  redisClusterNodes: string[] | null;
  topicPrefix: string;
  /** Brokers plus TLS and SASL: every kafkajs client is built from it (src/config/kafka.ts). */
  kafka: KafkaConnection;
  /** The registry URL plus auth and CA (src/config/registry.ts). */
  registry: RegistryConnection;
  /** The Redis URL plus ACL user and TLS files (src/config/redis.ts). */
  redis: RedisConnection;
  /** Replication of the topics our processes create (KAFKA_TOPIC_REPLICATION_FACTOR, KAFKA_TOPIC_MIN_INSYNC_REPLICAS). */
  topicReplication: TopicReplication;
}

/**
 * How topics we create are replicated; null means "from the cluster":
 * min(3, brokers) replicas and min.insync.replicas = replicas - 1 (at least
 * 1, at most 2), so a 3-broker cluster gets 3 and 2 and a single broker 1
 * and 1 (src/publisher/topic-ready.ts resolves it).
 */
export interface TopicReplication {
  factor: number | null;
  minInsync: number | null;
}

export function loadTopicReplication(env: Env): TopicReplication {
  const opt = (name: string) => (optionalStr(env, name) === undefined ? null : int(env, name, 1, { min: 1, max: 32 }));
  const r = { factor: opt('KAFKA_TOPIC_REPLICATION_FACTOR'), minInsync: opt('KAFKA_TOPIC_MIN_INSYNC_REPLICAS') };
  if (r.factor !== null && r.minInsync !== null && r.minInsync > r.factor) {
    throw new ConfigError(`KAFKA_TOPIC_MIN_INSYNC_REPLICAS (${r.minInsync}) must not exceed KAFKA_TOPIC_REPLICATION_FACTOR (${r.factor})`);
  }
  return r;
}

export const DEFAULT_PORTS = {
  postgres: 55432,
  redis: 56379,
  kafka: 59092,
  kafkaController: 59093,
  registry: 58081,
  api: 58080,
} as const;

export function loadStackConfig(env: Env = process.env): StackConfig {
  const port = (name: string, fallback: number) => int(env, name, fallback, { min: 1, max: 65535 });
  const pg = port('STACK_PG_PORT', DEFAULT_PORTS.postgres);
  const redisPort = port('STACK_REDIS_PORT', DEFAULT_PORTS.redis);
  const kafkaPort = port('STACK_KAFKA_PORT', DEFAULT_PORTS.kafka);
  // A stack of several brokers (STACK_KAFKA_BROKERS=3) listens on every other port from the first (docs/stack.md).
  const brokers = int(env, 'STACK_KAFKA_BROKERS', 1, { min: 1, max: 9 });
  const kafka = loadKafkaConnection(env, Array.from({ length: brokers }, (_, i) => `127.0.0.1:${kafkaPort + 2 * i}`).join(','));
  // The stack's Redis Cluster (STACK_REDIS_CLUSTER=1): six nodes from the Redis port + 1, the first three masters at start.
  const clusterDefault = bool(env, 'STACK_REDIS_CLUSTER', false)
    ? Array.from({ length: 3 }, (_, i) => `127.0.0.1:${redisPort + 1 + i}`).join(',')
    : undefined;
  const clusterNodes = optionalStr(env, 'REDIS_CLUSTER_NODES') ?? clusterDefault;
  const registryUrl = url(env, 'SCHEMA_REGISTRY_URL', `http://127.0.0.1:${port('STACK_REGISTRY_PORT', DEFAULT_PORTS.registry)}`, ['http:', 'https:']);
  const redisUrl = url(env, 'REDIS_URL', `redis://127.0.0.1:${redisPort}`, ['redis:', 'rediss:']);
  return {
    sourceUrl: url(env, 'SOURCE_DATABASE_URL', `postgres://postgres@127.0.0.1:${pg}/shop`, ['postgres:', 'postgresql:']),
    warehouseUrl: url(env, 'WAREHOUSE_DATABASE_URL', `postgres://postgres@127.0.0.1:${pg}/warehouse`, ['postgres:', 'postgresql:']),
    kafkaBrokers: kafka.brokers,
    registryUrl,
    redisUrl,
    redisClusterNodes: clusterNodes === undefined ? null : hostPortList({ REDIS_CLUSTER_NODES: clusterNodes }, 'REDIS_CLUSTER_NODES', '', 'Redis Cluster nodes'),
    topicPrefix: str(env, 'TOPIC_PREFIX', 'shop'),
    topicReplication: loadTopicReplication(env),
    kafka,
    registry: loadRegistryConnection(env, registryUrl),
    redis: loadRedisConnection(env, redisUrl),
  };
}

export { int };
