import { DEFAULT_PORTS, type StackConfig } from '../config/index.ts';

/**
 * A server a process depends on, named the way a user finds it: what it is,
 * where it is, and which setting points there. Start-up lines and the error
 * classifier use it to say "waiting for Kafka at 127.0.0.1:59092
 * (KAFKA_BROKERS)" instead of a bare "connect ECONNREFUSED".
 */
export type ServiceKind = 'kafka' | 'postgres' | 'registry' | 'redis';

export interface Endpoint {
  kind: ServiceKind;
  /** Human name: "Kafka", "Postgres (warehouse)", "the schema registry", "Redis". */
  service: string;
  /** The environment setting that holds the address. */
  setting: string;
  /** host:port list, never with credentials. */
  address: string;
  hosts: Array<{ host: string; port: number }>;
  /** True when the address is the local stack's default (`npm run stack:up` starts it). */
  localStack: boolean;
}

const LOCAL = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

function hostPort(u: URL, defaultPort: number): { host: string; port: number } {
  return { host: u.hostname, port: u.port ? Number(u.port) : defaultPort };
}

function fromUrl(kind: ServiceKind, service: string, setting: string, value: string, defaultPort: number, stackPort: number): Endpoint {
  const h = hostPort(new URL(value), defaultPort);
  return { kind, service, setting, address: `${h.host}:${h.port}`, hosts: [h], localStack: LOCAL.has(h.host) && h.port === stackPort };
}

export function postgresEndpoint(role: 'source' | 'warehouse' | 'registry', value: string, setting: string): Endpoint {
  return fromUrl('postgres', `Postgres (${role})`, setting, value, 5432, DEFAULT_PORTS.postgres);
}

export function kafkaEndpoint(brokers: string[], setting = 'KAFKA_BROKERS'): Endpoint {
  const hosts = brokers.map((b) => {
    const i = b.lastIndexOf(':');
    return { host: b.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(b.slice(i + 1)) };
  });
  return {
    kind: 'kafka', service: 'Kafka', setting, address: brokers.join(','), hosts,
    localStack: hosts.every((h) => LOCAL.has(h.host) && h.port === DEFAULT_PORTS.kafka),
  };
}

export function registryEndpoint(value: string, setting = 'SCHEMA_REGISTRY_URL'): Endpoint {
  const u = new URL(value);
  return fromUrl('registry', 'the schema registry', setting, value, u.protocol === 'https:' ? 443 : 80, DEFAULT_PORTS.registry);
}

export function redisEndpoint(value: string, setting = 'REDIS_URL'): Endpoint {
  return fromUrl('redis', 'Redis', setting, value, 6379, DEFAULT_PORTS.redis);
}

/** Every server of the stack config, for processes that use several. */
export function stackEndpoints(cfg: StackConfig): Endpoint[] {
  return [
    postgresEndpoint('source', cfg.sourceUrl, 'SOURCE_DATABASE_URL'),
    postgresEndpoint('warehouse', cfg.warehouseUrl, 'WAREHOUSE_DATABASE_URL'),
    kafkaEndpoint(cfg.kafkaBrokers),
    registryEndpoint(cfg.registryUrl),
    redisEndpoint(cfg.redisUrl),
  ];
}

/** "Kafka at 127.0.0.1:59092 (KAFKA_BROKERS)". */
export function describeEndpoint(e: Endpoint): string {
  return `${e.service} at ${e.address} (${e.setting})`;
}

/** The hint appended to a "cannot reach" line. */
export function endpointHint(e: Endpoint): string {
  return e.localStack ? 'start the local stack with `npm run stack:up`' : `check that it runs and that ${e.setting} points at it`;
}
