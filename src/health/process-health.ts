import type { Consumer, Kafka } from 'kafkajs';
import type pg from 'pg';
import type { Env } from '../config/env.ts';
import type { Service } from '../lifecycle/service.ts';
import type { Logger } from '../logger.ts';
import type { WarehouseSchemas } from '../sinks/postgres/pool.ts';
import { loadHealthListen, loadWatchdogConfig, type HealthListenConfig, type WatchdogConfig } from './config.ts';
import { ConsumerMetrics } from './consumer-metrics.ts';
import { ConsumerProbe } from './consumer-probe.ts';
import { HealthServer } from './health-server.ts';
import { HealthState } from './health-state.ts';
import { watchKafkaGroup } from './kafka-group.ts';
import type { StalledError } from './watchdog.ts';

/** Exits non-zero shortly after the log line is written: a stalled process may not be able to drain, so it does not try. */
export function exitStalled(_err: StalledError): void {
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 200).unref();
}

/**
 * The `started` condition: unhealthy ("starting") until every service
 * before it in the process's list has started, unhealthy ("stopping")
 * once shutdown begins. Put it last in the list.
 */
export function startedMarker(health: HealthState): Service {
  health.initCondition('started', { healthy: false, detail: 'starting' });
  return {
    name: 'health-started',
    start: async () => health.setCondition('started', { healthy: true, detail: 'started' }),
    stop: async () => health.initCondition('started', { healthy: false, detail: 'stopping' }),
  };
}

export interface ConsumerHealthOptions {
  /** Process name in the health bodies, e.g. `consumer-warehouse`. */
  process: string;
  listen: HealthListenConfig;
  watchdog: WatchdogConfig;
  kafka: Kafka;
  pool: pg.Pool;
  schemas: WarehouseSchemas;
  group: string;
  topics: readonly string[];
  redisKeyPrefix?: string;
  log: Logger;
  onExit?: (err: StalledError) => void;
}

/** Everything a consumer group process needs for health and metrics, to wire into its main. */
export interface ConsumerHealth {
  health: HealthState;
  metrics: ConsumerMetrics;
  server: HealthServer;
  probe: ConsumerProbe;
  /** Pass to the consumer: marks `kafka-group` from its events. */
  onConsumer: (c: Consumer) => void;
  /** Services in start order: [server, probe]; put `ready` last in the process's list. */
  services: Service[];
  ready: Service;
}

export function consumerHealth(o: ConsumerHealthOptions): ConsumerHealth {
  const metrics = new ConsumerMetrics(o.group);
  const health = new HealthState(metrics.registry, o.log);
  const server = new HealthServer({ process: o.process, host: o.listen.host, port: o.listen.port, portSetting: o.listen.portSetting, health, registry: metrics.registry, log: o.log });
  const probe = new ConsumerProbe({
    kafka: o.kafka, pool: o.pool, schemas: o.schemas, group: o.group, topics: o.topics, redisKeyPrefix: o.redisKeyPrefix,
    metrics, health, watchdog: o.watchdog, log: o.log, onExit: o.onExit ?? exitStalled,
  });
  const ready = startedMarker(health);
  return { health, metrics, server, probe, onConsumer: (c) => watchKafkaGroup(c, o.group, health), services: [server, probe], ready };
}

/** Listener and watchdog settings of a consumer process: `<prefix>_HEALTH_HOST/PORT` and the shared WATCHDOG_* settings. */
export function loadConsumerHealthConfig(env: Env, prefix: 'CONSUMER' | 'CLICKSTREAM', defaultPort: number): { listen: HealthListenConfig; watchdog: WatchdogConfig } {
  return { listen: loadHealthListen(env, `${prefix}_HEALTH_HOST`, `${prefix}_HEALTH_PORT`, defaultPort), watchdog: loadWatchdogConfig(env) };
}
