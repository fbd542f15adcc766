import { brokerList, int, str, url, type Env } from './env.ts';

/**
 * Connection settings shared by every process. Defaults point at the local
 * stack that `npm run stack:up` starts (ports in docs/stack.md); the same
 * ports are mapped by docker-compose.yml.
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
  return {
    sourceUrl: url(env, 'SOURCE_DATABASE_URL', `postgres://postgres@127.0.0.1:${DEFAULT_PORTS.postgres}/shop`, ['postgres:', 'postgresql:']),
    warehouseUrl: url(env, 'WAREHOUSE_DATABASE_URL', `postgres://postgres@127.0.0.1:${DEFAULT_PORTS.postgres}/warehouse`, ['postgres:', 'postgresql:']),
    kafkaBrokers: brokerList(env, 'KAFKA_BROKERS', `127.0.0.1:${DEFAULT_PORTS.kafka}`),
    registryUrl: url(env, 'SCHEMA_REGISTRY_URL', `http://127.0.0.1:${DEFAULT_PORTS.registry}`, ['http:', 'https:']),
    redisUrl: url(env, 'REDIS_URL', `redis://127.0.0.1:${DEFAULT_PORTS.redis}`, ['redis:', 'rediss:']),
    topicPrefix: str(env, 'TOPIC_PREFIX', 'shop'),
  };
}

export { int };
