import type { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import kafkajs, { Partitioners, type Producer } from 'kafkajs';
import type pg from 'pg';
import { planClickstream, registerClickSchema, type Catalog } from '../../src/generator/clickstream.ts';
import { Rng } from '../../src/generator/rng.ts';
import { nextSegment } from '../../src/generator/rows.ts';
import { DEFAULT_MIX, TrafficGenerator, type TrafficMix } from '../../src/generator/writer.ts';
import { parseLsn } from '../../src/source/lsn.ts';
import { sleep } from '../../src/util/sleep.ts';

/**
 * The chaos run's load. Shop traffic: orders (one to three per
 * transaction), status changes through to cancellations and returns,
 * segment, e-mail and price changes, new customers, order deletes, and
 * late dimension changes: one transaction that places an order and changes
 * its customer's segment and its product's price, so the fact and its
 * dimensions travel on different topics (and members) and may be applied
 * in either order. Clickstream traffic: a few visitors every couple of
 * seconds, late and duplicate events included. A write that fails while a
 * server is down is not retried (the source is the truth; a clickstream
 * send is retried, duplicates are part of its contract).
 */
export const CHAOS_MIX: TrafficMix = { ...DEFAULT_MIX, segmentChange: 0.15, emailChange: 0.05, priceChange: 0.05, newCustomer: 0.08, deleteOrder: 0.03 };

export interface OrderLsn {
  /** A WAL position at or past the commit of the transaction that placed orders up to `maxOrderId`. */
  lsn: bigint;
  maxOrderId: number;
}

/** Ids of the late-dimension transactions, far above the generator's own. */
const LATE_BASE = 500_000_000;

export class ShopLoad {
  readonly orderLsns: OrderLsn[] = [];
  writeFailures = 0;
  lateDimensionChanges = 0;
  private readonly rng: Rng;
  private readonly gen: TrafficGenerator;
  private nextLate = LATE_BASE;
  private running: Promise<void> | undefined;
  private readonly abort = new AbortController();

  constructor(private readonly pool: pg.Pool, seed: number, private readonly ordersPerSecond: number) {
    this.rng = new Rng(seed ^ 0x10ad);
    this.gen = new TrafficGenerator(pool, { schema: 'public', seed });
  }

  get stats() {
    return { ...this.gen.stats, lateDimensionChanges: this.lateDimensionChanges, writeFailures: this.writeFailures };
  }

  seedCatalog(customers: number, products: number): Promise<void> {
    return this.gen.seedCatalog(customers, products);
  }

  start(): void {
    this.running ??= this.loop(this.abort.signal);
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
  }

  private async loop(signal: AbortSignal): Promise<void> {
    const tickMs = 100;
    let owed = 0;
    while (!signal.aborted) {
      const t0 = Date.now();
      owed += (this.ordersPerSecond * tickMs) / 1000;
      while (owed >= 1 && !signal.aborted) {
        owed -= 1;
        try {
          const n = this.rng.chance(0.2) ? this.rng.int(2, 3) : 1;
          await this.gen.placeOrders(n, n);
          await this.noteLsn();
          await this.gen.sideEffects(CHAOS_MIX);
          if (this.rng.chance(0.05)) await this.lateDimensionChange();
        } catch {
          this.writeFailures += 1;
          owed = 0;
          await sleep(300, signal).catch(() => {});
        }
      }
      const spent = Date.now() - t0;
      if (spent < tickMs) await sleep(tickMs - spent, signal).catch(() => {});
    }
  }

  private async noteLsn(): Promise<void> {
    const { rows } = await this.pool.query<{ l: string; o: string }>(`SELECT pg_current_wal_lsn()::text AS l, (SELECT max(order_id) FROM public.orders WHERE order_id < ${LATE_BASE})::text AS o`);
    this.orderLsns.push({ lsn: parseLsn(rows[0]!.l), maxOrderId: Number(rows[0]!.o) });
  }

  private async lateDimensionChange(): Promise<void> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const c = await client.query<{ id: string; seg: string }>('SELECT customer_id::text id, customer_segment seg FROM public.customers ORDER BY random() LIMIT 1');
      const p = await client.query<{ id: string; price: string }>('SELECT product_id::text id, price::text price FROM public.products ORDER BY random() LIMIT 1');
      const cust = c.rows[0];
      const prod = p.rows[0];
      if (!cust || !prod) {
        await client.query('ROLLBACK');
        return;
      }
      const id = this.nextLate++;
      await client.query(`INSERT INTO public.orders (order_id, customer_id, order_date, status) VALUES ($1, $2, now(), 'placed')`, [id, cust.id]);
      await client.query('INSERT INTO public.order_items (order_id, product_id, quantity, unit_price, discount) VALUES ($1, $2, $3, $4, 0)', [id, prod.id, this.rng.int(1, 3), prod.price]);
      await client.query('UPDATE public.customers SET customer_segment = $2 WHERE customer_id = $1', [cust.id, nextSegment(this.rng, cust.seg)]);
      await client.query('UPDATE public.products SET price = round(price * 1.03, 2) WHERE product_id = $1', [prod.id]);
      await client.query('COMMIT');
      this.lateDimensionChanges += 1;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }
}

export class ClickLoad {
  sent = 0;
  sendFailures = 0;
  private round = 0;
  private producer: Producer | undefined;
  private running: Promise<void> | undefined;
  private readonly abort = new AbortController();

  constructor(private readonly o: { brokers: string[]; registry: SchemaRegistry; topic: string; seed: number; catalog: Catalog; everyMs: number; visitors: number }) {}

  async start(): Promise<void> {
    const kafka = new kafkajs.Kafka({ clientId: 'chaos-clickstream', brokers: this.o.brokers, logLevel: kafkajs.logLevel.NOTHING, retry: { retries: 3 } });
    this.producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
    await this.producer.connect();
    // Registered once: the schema id stays valid while the registry is down.
    const id = await registerClickSchema(this.o.registry, this.o.topic);
    this.running = this.loop(id, this.abort.signal);
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
    await this.producer?.disconnect().catch(() => {});
  }

  private async loop(schemaId: number, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const now = Date.now();
      const planned = planClickstream({ seed: this.o.seed * 1000 + this.round++, visitors: this.o.visitors, startMs: now - 3600_000, spanMs: 3600_000, lateRate: 0.05, duplicateRate: 0.03, tooLateRate: 0.02, catalog: this.o.catalog });
      const overshoot = Math.max(0, ...planned.map((s) => s.value.occurred_at - now));
      let messages: Array<{ key: Buffer; value: Buffer }> | undefined;
      for (let attempt = 0; !signal.aborted; attempt++) {
        try {
          messages ??= await Promise.all(planned.map(async (s) => ({
            key: Buffer.from(s.value.anonymous_id, 'utf8'),
            value: await this.o.registry.encode(schemaId, { ...s.value, occurred_at: s.value.occurred_at - overshoot }),
          })));
          await this.producer!.send({ topic: this.o.topic, acks: -1, messages });
          this.sent += messages.length;
          break;
        } catch {
          this.sendFailures += 1;
          await sleep(Math.min(5000, 500 * (attempt + 1)), signal).catch(() => {});
        }
      }
      await sleep(this.o.everyMs, signal).catch(() => {});
    }
  }
}
