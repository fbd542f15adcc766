import { Command, InvalidArgumentError } from 'commander';
import kafkajs, { Partitioners } from 'kafkajs';
import pg from 'pg';
import { loadStackConfig } from '../config/index.ts';
import { kafkaClientConfig } from '../config/kafka.ts';
import { createRegistry } from '../consumer/avro.ts';
import { isMain } from '../lifecycle/is-main.ts';
import { exitOnStartupError } from '../lifecycle/run-main.ts';
import { createLogger } from '../logger.ts';
import { DEFAULT_PLAN, planClickstream, produceClickstream, type Catalog } from './clickstream.ts';

/**
 * `npx tsx src/generator/clickstream-cli.ts [--visitors N] [--topic T] [--from-source]`
 * Produces realistic clickstream traffic (src/generator/clickstream.ts).
 * With --from-source, products, customers and orders come from the source
 * database, so cart prices match the catalogue and int_check_order finds
 * the orders in stg_orders.
 */
function count(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('must be a whole number');
  return Number(value);
}
function rate(value: string): number {
  const n = Number(value);
  if (!/^\d*\.?\d+$/.test(value) || n > 1) throw new InvalidArgumentError('must be a number between 0 and 1');
  return n;
}

async function loadCatalog(url: string, schema: string): Promise<Catalog> {
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  try {
    const q = (sql: string) => pool.query(sql.replaceAll('$S', `"${schema.replaceAll('"', '')}"`));
    const products = await q('SELECT product_id::int AS id, price::text AS price FROM $S.products WHERE price IS NOT NULL ORDER BY product_id LIMIT 5000');
    const customers = await q('SELECT customer_id::int AS id FROM $S.customers ORDER BY customer_id LIMIT 50000');
    const orders = await q("SELECT order_id::int AS id, customer_id::int AS cid FROM $S.orders WHERE status = 'placed' ORDER BY order_id DESC LIMIT 5000");
    return {
      products: products.rows.map((r) => ({ productId: r.id as number, price: r.price as string })),
      customerIds: customers.rows.map((r) => r.id as number),
      orders: orders.rows.map((r) => ({ orderId: r.id as number, customerId: r.cid as number })),
    };
  } finally {
    await pool.end();
  }
}

export interface ClickstreamGenerateOptions { topic: string; partitions: number; visitors: number; hours: number; lateRate: number; duplicateRate: number; tooLateRate: number; fromSource?: boolean; sourceSchema: string; seed: number }

/** The clickstream generator's flags (`name`: how the caller calls it). */
export function generateClickstreamCommand(name = 'generate-clickstream'): Command {
  return new Command(name)
    .description('Produce generated clickstream traffic to Kafka (late, duplicate and too-late events included)')
    .option('--topic <name>', 'topic', process.env.CLICKSTREAM_TOPIC ?? 'clickstream.events')
    .option('--partitions <n>', 'partitions when the topic is created', count, 3)
    .option('--visitors <n>', 'visitors to simulate', count, DEFAULT_PLAN.visitors)
    .option('--hours <n>', 'spread session starts over the last N hours', count, 6)
    .option('--late-rate <r>', 'share of events delivered out of order', rate, DEFAULT_PLAN.lateRate)
    .option('--duplicate-rate <r>', 'share of events delivered twice', rate, DEFAULT_PLAN.duplicateRate)
    .option('--too-late-rate <r>', 'share of visitors with one event beyond the allowed lateness', rate, DEFAULT_PLAN.tooLateRate)
    .option('--from-source', 'take products, customers and orders from the source database')
    .option('--source-schema <name>', 'source schema', 'public')
    .option('--seed <n>', 'random seed', count, DEFAULT_PLAN.seed);
}

export async function runGenerateClickstream(o: ClickstreamGenerateOptions): Promise<void> {
  const log = createLogger('generate-clickstream');
  const stack = loadStackConfig();
  const catalog = o.fromSource ? await loadCatalog(stack.sourceUrl, o.sourceSchema) : undefined;
  const spanMs = o.hours * 3600_000;
  const now = Date.now();
  const planned = planClickstream({ seed: o.seed, visitors: o.visitors, startMs: now - spanMs, spanMs, lateRate: o.lateRate, duplicateRate: o.duplicateRate, tooLateRate: o.tooLateRate, catalog });
  // Returning visitors' later sessions can run past now; shift everything back so no event is in the future.
  const overshoot = Math.max(0, ...planned.map((s) => s.value.occurred_at - now));
  const sends = planned.map((s) => ({ ...s, value: { ...s.value, occurred_at: s.value.occurred_at - overshoot } }));
  const kafka = new kafkajs.Kafka(kafkaClientConfig(stack.kafka, { clientId: 'generate-clickstream', logLevel: kafkajs.logLevel.WARN }));
  // The Java-compatible (murmur2) partitioner: a key lands where a Java producer would put it.
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
  const admin = kafka.admin();
  await Promise.all([producer.connect(), admin.connect()]);
  try {
    const n = await produceClickstream({ producer, admin, registry: createRegistry(stack.registry), topic: o.topic, partitions: o.partitions, replication: stack.topicReplication }, sends);
    const kinds = sends.reduce<Record<string, number>>((acc, s) => ({ ...acc, [s.kind]: (acc[s.kind] ?? 0) + 1 }), {});
    log.info({ topic: o.topic, messages: n, ...kinds }, 'clickstream produced');
  } finally {
    await Promise.all([producer.disconnect(), admin.disconnect()]);
  }
}

if (isMain(import.meta.url)) {
  runGenerateClickstream(generateClickstreamCommand().parse().opts<ClickstreamGenerateOptions>()).catch((err) => exitOnStartupError('generate-clickstream', err));
}
