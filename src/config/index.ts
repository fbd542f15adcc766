import { int, str, url, type Env } from './env.ts';
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
  topicPrefix: string;
  /** Brokers plus TLS and SASL: every kafkajs client is built from it (src/config/kafka.ts). */
  kafka: KafkaConnection;
  /** The registry URL plus auth and CA (src/config/registry.ts). */
  registry: RegistryConnection;
  /** The Redis URL plus ACL user and TLS files (src/config/redis.ts). */
  redis: RedisConnection;
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
  const kafka = loadKafkaConnection(env, `127.0.0.1:${port('STACK_KAFKA_PORT', DEFAULT_PORTS.kafka)}`);
  const registryUrl = url(env, 'SCHEMA_REGISTRY_URL', `http://127.0.0.1:${port('STACK_REGISTRY_PORT', DEFAULT_PORTS.registry)}`, ['http:', 'https:']);
  const redisUrl = url(env, 'REDIS_URL', `redis://127.0.0.1:${port('STACK_REDIS_PORT', DEFAULT_PORTS.redis)}`, ['redis:', 'rediss:']);
  return {
    sourceUrl: url(env, 'SOURCE_DATABASE_URL', `postgres://postgres@127.0.0.1:${pg}/shop`, ['postgres:', 'postgresql:']),
    warehouseUrl: url(env, 'WAREHOUSE_DATABASE_URL', `postgres://postgres@127.0.0.1:${pg}/warehouse`, ['postgres:', 'postgresql:']),
    kafkaBrokers: kafka.brokers,
    registryUrl,
    redisUrl,
    topicPrefix: str(env, 'TOPIC_PREFIX', 'shop'),
    kafka,
    registry: loadRegistryConnection(env, registryUrl),
    redis: loadRedisConnection(env, redisUrl),
  };
}

export { int };
