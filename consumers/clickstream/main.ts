import kafkajs from 'kafkajs';
import { createRegistry } from '../../src/consumer/avro.ts';
import { kafkaLogCreator } from '../../src/consumer/kafka-log.ts';
import { HEALTH_PORTS } from '../../src/health/config.ts';
import { consumerHealth, loadConsumerHealthConfig } from '../../src/health/process-health.ts';
import { isMain } from '../../src/lifecycle/is-main.ts';
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
export const runClickstreamConsumer = (): Promise<void> => runMain('consumer-clickstream', async (log) => {
  const cfg = loadClickstreamConfig();
  const healthCfg = loadConsumerHealthConfig(process.env, 'CLICKSTREAM', HEALTH_PORTS.clickstream);
  const pool = createWarehousePool(cfg.stack.warehouseUrl);
  const kafka = new kafkajs.Kafka({ clientId: `consumer-${cfg.group}`, brokers: cfg.stack.kafkaBrokers, logCreator: kafkaLogCreator(log) });
  const h = consumerHealth({ process: 'consumer-clickstream', ...healthCfg, kafka, pool, schemas: cfg.schemas, group: cfg.group, topics: [cfg.topic], log });
  // Listening before the migrations, so /healthz answers (and /readyz says "starting") during start-up.
  await h.server.start();
  await migrate(pool, 'warehouse', {
    schemas: warehouseSchemaNames(cfg.schemas),
    log,
  });
  const consumer = new ClickstreamConsumer({
    kafka, registry: createRegistry(cfg.stack.registryUrl), pool, schemas: cfg.schemas, group: cfg.group, topic: cfg.topic,
    allowedLatenessUs: cfg.allowedLatenessUs, log, maxMessagesPerTx: cfg.maxMessagesPerTx, sessionTimeoutMs: cfg.sessionTimeoutMs,
    observer: h.metrics, onConsumer: h.onConsumer,
  });
  log.info({ group: cfg.group, topic: cfg.topic, schemas: cfg.schemas, allowedLatenessSeconds: Number(cfg.allowedLatenessUs / 1_000_000n) }, 'clickstream consumer configured');
  const connections: Service = {
    name: 'connections',
    start: async () => {},
    stop: async () => {
      await pool.end().catch(() => {});
    },
  };
  return [h.server, connections, h.probe, consumer, h.ready];
});

if (isMain(import.meta.url)) await runClickstreamConsumer();
