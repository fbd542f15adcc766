import kafkajs from 'kafkajs';
import { kafkaClientConfig } from '../../src/config/kafka.ts';
import { createRegistry } from '../../src/consumer/avro.ts';
import { kafkaLogCreator } from '../../src/consumer/kafka-log.ts';
import { HEALTH_PORTS, loadWatchdogConfig } from '../../src/health/config.ts';
import { consumerHealth, loadConsumerHealthConfig } from '../../src/health/process-health.ts';
import { isMain } from '../../src/lifecycle/is-main.ts';
import { postgresEndpoint } from '../../src/lifecycle/endpoints.ts';
import { withRetry } from '../../src/lifecycle/retry.ts';
import { runMain } from '../../src/lifecycle/run-main.ts';
import type { Service } from '../../src/lifecycle/service.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { createWarehousePool } from '../../src/sinks/postgres/pool.ts';
import { loadClickstreamConfig } from './config.ts';
import { ClickstreamConsumer } from './consumer.ts';

/**
 * The clickstream consumer process: `clickstream.events` → stg_events,
 * fct_events, sessions, cart values and mart_cart_value (docs/clickstream.md).
 * Applies the warehouse migrations first so a fresh database works.
 * `shopstream consume clickstream` runs it.
 */
export const runClickstreamConsumer = (): Promise<void> => runMain('consumer-clickstream', async (log, ctx) => {
  const cfg = loadClickstreamConfig();
  const healthCfg = loadConsumerHealthConfig(process.env, 'CLICKSTREAM', HEALTH_PORTS.clickstream);
  const pool = createWarehousePool(cfg.stack.warehouseUrl);
  const kafka = new kafkajs.Kafka(kafkaClientConfig(cfg.stack.kafka, { clientId: `consumer-${cfg.group}`, logCreator: kafkaLogCreator(log) }));
  const h = consumerHealth({ process: 'consumer-clickstream', ...healthCfg, kafka, pool, schemas: cfg.schemas, group: cfg.group, topics: [cfg.topic], log });
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
  const consumer = new ClickstreamConsumer({
    kafka, registry: createRegistry(cfg.stack.registry), pool, schemas: cfg.schemas, group: cfg.group, topic: cfg.topic,
    allowedLatenessUs: cfg.allowedLatenessUs, log, maxMessagesPerTx: cfg.maxMessagesPerTx, sessionTimeoutMs: cfg.sessionTimeoutMs,
    observer: h.metrics, onConsumer: h.onConsumer,
    onRetentionGap: cfg.onRetentionGap,
    onFatal: ctx.fatal, endpoints: ctx.endpoints,
    topicReplication: cfg.stack.topicReplication,
  });
  h.probe.watchRetentionGaps(() => consumer.retentionGaps());
  log.info({ group: cfg.group, topic: cfg.topic, schemas: cfg.schemas, allowedLatenessSeconds: Number(cfg.allowedLatenessUs / 1_000_000n) }, 'clickstream consumer configured');
  const connections: Service = {
    name: 'connections',
    start: async () => {},
    stop: async () => {
      await pool.end().catch(() => {});
    },
  };
  return [h.server, connections, h.probe, consumer, h.ready];
}, { startupBoundMs: () => loadWatchdogConfig(process.env).exitMs });

if (isMain(import.meta.url)) await runClickstreamConsumer();
