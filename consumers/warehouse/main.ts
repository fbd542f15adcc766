import kafkajs from 'kafkajs';
import { kafkaClientConfig } from '../../src/config/kafka.ts';
import { AuthFailedError } from '../../src/errors.ts';
import { connectRedis } from '../../src/sinks/redis/connect.ts';
import { createRegistry } from '../../src/consumer/avro.ts';
import { loadWarehouseConsumerConfig } from './config.ts';
import { kafkaLogCreator } from '../../src/consumer/kafka-log.ts';
import { WarehouseConsumer } from './consumer.ts';
import { HEALTH_PORTS, loadWatchdogConfig } from '../../src/health/config.ts';
import { consumerHealth, loadConsumerHealthConfig } from '../../src/health/process-health.ts';
import { isMain } from '../../src/lifecycle/is-main.ts';
import { postgresEndpoint } from '../../src/lifecycle/endpoints.ts';
import { withRetry } from '../../src/lifecycle/retry.ts';
import { runMain } from '../../src/lifecycle/run-main.ts';
import type { Service } from '../../src/lifecycle/service.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { createWarehousePool } from '../../src/sinks/postgres/pool.ts';
import { createRedisClient } from '../../src/sinks/redis/redis-client.ts';

/**
 * The warehouse consumer process: source-table topics → staging, star
 * schema, marts and CLV in Postgres, CLV in Redis. Applies the warehouse
 * migrations first so a fresh database works.
 * `shopstream consume warehouse` runs it.
 */
export const runWarehouseConsumer = (): Promise<void> => runMain('consumer-warehouse', async (log, ctx) => {
  const cfg = loadWarehouseConsumerConfig();
  const healthCfg = loadConsumerHealthConfig(process.env, 'CONSUMER', HEALTH_PORTS.warehouse);
  const pool = createWarehousePool(cfg.stack.warehouseUrl);
  const kafka = new kafkajs.Kafka(kafkaClientConfig(cfg.stack.kafka, { clientId: `consumer-${cfg.group}`, logCreator: kafkaLogCreator(log) }));
  const h = consumerHealth({
    process: 'consumer-warehouse', ...healthCfg, kafka, pool, schemas: cfg.schemas, group: cfg.group, topics: cfg.topics, redisKeyPrefix: cfg.redisKeyPrefix, log,
  });
  // Listening before the migrations, so /healthz answers (and /readyz says "starting") during start-up.
  await h.server.start();
  // An idle connection dropped by a Postgres restart must not crash the process; the next query reconnects.
  pool.on('error', (err) => log.warn({ err: err.message }, 'idle warehouse connection failed'));
  // Likewise a checked-out client between two queries of a batch transaction: the transaction fails and is retried.
  pool.on('connect', (client) => client.on('error', (err) => log.warn({ err: err.message }, 'warehouse connection failed')));
  // Postgres may be starting: the migrations wait for it like every other start-up step.
  await withRetry(() => migrate(pool, 'warehouse', { schemas: warehouseSchemaNames(cfg.schemas), log }), {
    what: 'warehouse migrations', log, signal: ctx.signal, endpoints: ctx.endpoints, via: postgresEndpoint('warehouse', cfg.stack.warehouseUrl, 'WAREHOUSE_DATABASE_URL'),
  });
  // Fail fast on a Redis command while disconnected (the outbox keeps the
  // work); reconnect forever in the background.
  const redis = createRedisClient(cfg.stack, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true });
  redis.on('error', (err) => log.debug({ err: err.message }, 'redis'));
  // An outage is waited out (the outbox keeps the CLV updates); refused credentials are not.
  await connectRedis(redis, { waitMs: 10_000 }).catch((err: Error) => {
    if (err instanceof AuthFailedError) throw err;
    log.warn({ err: err.message }, 'redis unavailable at start; CLV waits in the outbox');
  });
  const consumer = new WarehouseConsumer({
    kafka, registry: createRegistry(cfg.stack.registry), pool, redis, schemas: cfg.schemas, group: cfg.group,
    topics: cfg.topics, redisKeyPrefix: cfg.redisKeyPrefix, log, thresholds: cfg.thresholds, maxMessagesPerTx: cfg.maxMessagesPerTx, txBudgetMs: cfg.txBudgetMs, backlogTxBudgetMs: cfg.backlogTxBudgetMs, partitionsConcurrently: cfg.partitionsConcurrently,
    sessionTimeoutMs: cfg.sessionTimeoutMs, onFatal: ctx.fatal, endpoints: ctx.endpoints,
    topicWaitMs: cfg.topicWaitMs,
    topicReplication: cfg.stack.topicReplication,
    inputFormats: cfg.inputFormats,
    observer: h.metrics, onConsumer: h.onConsumer,
    onRetentionGap: cfg.onRetentionGap,
  });
  h.probe.watchRetentionGaps(() => consumer.retentionGaps());
  log.info({ group: cfg.group, topics: cfg.topics, schemas: cfg.schemas }, 'warehouse consumer configured');
  const connections: Service = {
    name: 'connections',
    start: async () => {},
    stop: async () => {
      redis.disconnect();
      await pool.end().catch(() => {});
    },
  };
  return [h.server, connections, h.probe, consumer, h.ready];
}, { startupBoundMs: () => loadWatchdogConfig(process.env).exitMs });

if (isMain(import.meta.url)) await runWarehouseConsumer();
