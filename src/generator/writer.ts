import type pg from 'pg';
import type { Logger } from '../logger.ts';
import { sleep } from '../util/sleep.ts';
import { Rng } from './rng.ts';
import { makeCustomer, makeOrderItems, makeProduct, nextSegment, nextStatus, type ProductRow } from './rows.ts';

/**
 * Writes realistic shop traffic into the source schema: customers, products,
 * orders with lines, status transitions, segment changes, price changes and a
 * few deletes. Each business action is its own source transaction, as an
 * application would issue it, so the stream has real transaction boundaries.
 */
export interface GeneratorOptions {
  schema: string;
  seed: number;
}

export interface TrafficMix {
  /** Probability per order tick of also advancing an open order's status. */
  statusChange: number;
  segmentChange: number;
  emailChange: number;
  priceChange: number;
  newCustomer: number;
  deleteOrder: number;
}

export const DEFAULT_MIX: TrafficMix = {
  statusChange: 0.9,
  segmentChange: 0.05,
  emailChange: 0.02,
  priceChange: 0.02,
  newCustomer: 0.05,
  deleteOrder: 0.005,
};

export interface GeneratorStats {
  customers: number;
  products: number;
  orders: number;
  orderItems: number;
  statusChanges: number;
  segmentChanges: number;
  deletes: number;
}

export class TrafficGenerator {
  private readonly rng: Rng;
  private readonly q: (name: string) => string;
  private products: ProductRow[] = [];
  private customers: { id: number; segment: string }[] = [];
  private readonly openOrders = new Map<number, string>();
  private nextCustomerId = 1;
  private nextProductId = 1;
  private nextOrderId = 1;
  readonly stats: GeneratorStats = { customers: 0, products: 0, orders: 0, orderItems: 0, statusChanges: 0, segmentChanges: 0, deletes: 0 };

  constructor(private readonly pool: pg.Pool, private readonly opts: GeneratorOptions, private readonly log?: Logger) {
    if (!/^[a-z_][a-z0-9_]*$/.test(opts.schema)) throw new Error(`invalid schema name "${opts.schema}"`);
    this.rng = new Rng(opts.seed);
    this.q = (name) => `"${opts.schema}".${name}`;
  }

  get hasCatalog(): boolean {
    return this.customers.length > 0 && this.products.length > 0;
  }

  /** Continues id sequences after rows already in the source, so a second run appends. */
  async resume(): Promise<void> {
    const { rows } = await this.pool.query<{ c: string; p: string; o: string }>(
      `SELECT (SELECT coalesce(max(customer_id),0) FROM ${this.q('customers')}) c,
              (SELECT coalesce(max(product_id),0) FROM ${this.q('products')}) p,
              (SELECT coalesce(max(order_id),0) FROM ${this.q('orders')}) o`,
    );
    const r = rows[0]!;
    this.nextCustomerId = Number(r.c) + 1;
    this.nextProductId = Number(r.p) + 1;
    this.nextOrderId = Number(r.o) + 1;
    const prods = await this.pool.query(`SELECT product_id, product_name, category, price::text, rating::text FROM ${this.q('products')}`);
    this.products = prods.rows.map((p) => ({ productId: Number(p.product_id), productName: p.product_name, category: p.category, price: p.price, rating: p.rating }));
    const custs = await this.pool.query(`SELECT customer_id, customer_segment FROM ${this.q('customers')}`);
    this.customers = custs.rows.map((c) => ({ id: Number(c.customer_id), segment: c.customer_segment }));
    const open = await this.pool.query(`SELECT order_id, status FROM ${this.q('orders')} WHERE status IN ('placed','shipped','delivered')`);
    for (const o of open.rows) this.openOrders.set(Number(o.order_id), o.status);
  }

  /** Inserts customers and products in batches of up to 1,000 rows per transaction. */
  async seedCatalog(customers: number, products: number): Promise<void> {
    for (let done = 0; done < products; done += 1000) {
      const batch = Array.from({ length: Math.min(1000, products - done) }, () => makeProduct(this.rng, this.nextProductId++));
      await this.pool.query(
        `INSERT INTO ${this.q('products')} (product_id, product_name, category, price, rating)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::numeric[], $5::numeric[])`,
        [batch.map((p) => p.productId), batch.map((p) => p.productName), batch.map((p) => p.category), batch.map((p) => p.price), batch.map((p) => p.rating)],
      );
      this.products.push(...batch);
      this.stats.products += batch.length;
    }
    for (let done = 0; done < customers; done += 1000) {
      const batch = Array.from({ length: Math.min(1000, customers - done) }, () => makeCustomer(this.rng, this.nextCustomerId++));
      await this.insertCustomers(batch);
    }
  }

  private async insertCustomers(batch: ReturnType<typeof makeCustomer>[]): Promise<void> {
    await this.pool.query(
      `INSERT INTO ${this.q('customers')} (customer_id, email, first_name, last_name, customer_segment)
       SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[])`,
      [batch.map((c) => c.customerId), batch.map((c) => c.email), batch.map((c) => c.firstName), batch.map((c) => c.lastName), batch.map((c) => c.segment)],
    );
    for (const c of batch) this.customers.push({ id: c.customerId, segment: c.segment });
    this.stats.customers += batch.length;
  }

  /**
   * Places `count` orders, `perTransaction` orders to a source transaction.
   * With perTransaction = 1 it is what a shop does; larger values build a
   * backlog quickly for benchmarks.
   */
  async placeOrders(count: number, perTransaction = 1): Promise<void> {
    if (this.customers.length === 0 || this.products.length === 0) throw new Error('seed the catalog before placing orders');
    for (let done = 0; done < count; done += perTransaction) {
      const n = Math.min(perTransaction, count - done);
      const orderIds: number[] = [];
      const customerIds: number[] = [];
      const items: { orderId: number; productId: number; quantity: number; unitPrice: string; discount: string }[] = [];
      for (let i = 0; i < n; i++) {
        const orderId = this.nextOrderId++;
        orderIds.push(orderId);
        customerIds.push(this.rng.pick(this.customers).id);
        for (const it of makeOrderItems(this.rng, this.products)) items.push({ orderId, ...it });
      }
      await this.pool.query(
        `WITH o AS (
           INSERT INTO ${this.q('orders')} (order_id, customer_id, order_date, status)
           SELECT id, cid, now(), 'placed' FROM unnest($1::bigint[], $2::bigint[]) AS t(id, cid)
         )
         INSERT INTO ${this.q('order_items')} (order_id, product_id, quantity, unit_price, discount)
         SELECT * FROM unnest($3::bigint[], $4::bigint[], $5::int[], $6::numeric[], $7::numeric[])`,
        [orderIds, customerIds, items.map((x) => x.orderId), items.map((x) => x.productId), items.map((x) => x.quantity), items.map((x) => x.unitPrice), items.map((x) => x.discount)],
      );
      for (const id of orderIds) this.openOrders.set(id, 'placed');
      this.stats.orders += n;
      this.stats.orderItems += items.length;
    }
  }

  /** One random non-order action according to the mix (a status change, a segment change, ...). */
  async sideEffects(mix: TrafficMix = DEFAULT_MIX): Promise<void> {
    if (this.rng.chance(mix.statusChange) && this.openOrders.size > 0) {
      // The oldest open orders move first, as fulfilment works through a queue.
      const id = nthKey(this.openOrders, Math.floor(this.rng.next() * Math.min(this.openOrders.size, 200)));
      const next = nextStatus(this.rng, this.openOrders.get(id)!);
      if (next === undefined) this.openOrders.delete(id);
      else {
        await this.pool.query(`UPDATE ${this.q('orders')} SET status = $2 WHERE order_id = $1`, [id, next]);
        if (next === 'cancelled' || next === 'returned') this.openOrders.delete(id);
        else this.openOrders.set(id, next);
        this.stats.statusChanges += 1;
      }
    }
    if (this.rng.chance(mix.segmentChange) && this.customers.length > 0) {
      const c = this.rng.pick(this.customers);
      c.segment = nextSegment(this.rng, c.segment);
      await this.pool.query(`UPDATE ${this.q('customers')} SET customer_segment = $2 WHERE customer_id = $1`, [c.id, c.segment]);
      this.stats.segmentChanges += 1;
    }
    if (this.rng.chance(mix.emailChange) && this.customers.length > 0) {
      const c = this.rng.pick(this.customers);
      await this.pool.query(`UPDATE ${this.q('customers')} SET email = upper(email) WHERE customer_id = $1`, [c.id]);
    }
    if (this.rng.chance(mix.priceChange) && this.products.length > 0) {
      const p = this.rng.pick(this.products);
      await this.pool.query(`UPDATE ${this.q('products')} SET price = round(price * 1.05, 2) WHERE product_id = $1`, [p.productId]);
    }
    if (this.rng.chance(mix.newCustomer)) await this.insertCustomers([makeCustomer(this.rng, this.nextCustomerId++)]);
    if (this.rng.chance(mix.deleteOrder) && this.openOrders.size > 0) {
      const id = nthKey(this.openOrders, 0);
      this.openOrders.delete(id);
      await this.pool.query(`DELETE FROM ${this.q('orders')} WHERE order_id = $1`, [id]);
      this.stats.deletes += 1;
    }
  }

  /**
   * Steady traffic: `ordersPerSecond` orders, each followed by side effects,
   * paced in 100 ms ticks until the duration elapses or the signal aborts.
   */
  async run(opts: { ordersPerSecond: number; durationMs: number; signal?: AbortSignal; mix?: TrafficMix }): Promise<GeneratorStats> {
    const start = Date.now();
    const tickMs = 100;
    let owed = 0;
    while (Date.now() - start < opts.durationMs && !opts.signal?.aborted) {
      const tickStart = Date.now();
      owed += (opts.ordersPerSecond * tickMs) / 1000;
      while (owed >= 1) {
        owed -= 1;
        await this.placeOrders(1);
        await this.sideEffects(opts.mix);
      }
      const elapsed = Date.now() - tickStart;
      if (elapsed < tickMs) await sleep(tickMs - elapsed, opts.signal);
      else this.log?.debug({ elapsed }, 'generator behind schedule');
    }
    return this.stats;
  }
}

function nthKey<K>(map: Map<K, unknown>, n: number): K {
  let i = 0;
  for (const key of map.keys()) if (i++ === n) return key;
  throw new RangeError(`map has no key at ${n}`);
}
