import { readFile } from 'node:fs/promises';
import { SchemaType, type SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import type { Admin, Producer } from 'kafkajs';
import { ensureTopic } from '../../consumers/clickstream/topic.ts';
import type { TopicReplication } from '../config/index.ts';
import type { EventType } from '../transforms/sessions.ts';
import { centsToDecimal, Rng } from './rng.ts';

/**
 * Realistic clickstream traffic for `clickstream.events` ([contract §2](../../docs/contract.md#2-change-events)): visitors
 * with one or more sessions of page_view → product_view → add_to_cart /
 * remove_from_cart → checkout_started → order_placed, many abandoning on
 * the way; some log in mid-session (customer_id appears). Delivery is
 * imperfect on purpose: some events are delivered late (out of order,
 * inside the allowed lateness), some twice, and a few are so late that they
 * fall beyond the allowed lateness. planClickstream is pure and seeded, so
 * a test can recompute what it sent.
 */
export interface ClickValue {
  event_id: string;
  event_type: EventType;
  /** timestamp-millis */
  occurred_at: number;
  anonymous_id: string;
  customer_id: number | null;
  product_id: number | null;
  quantity: number | null;
  unit_price: string | null;
  order_id: number | null;
  page_url: string | null;
}

export interface Catalog {
  products: Array<{ productId: number; price: string }>;
  customerIds: number[];
  /** Orders the clickstream may report as placed (order_id, customer_id): real ones make int_check_order find them. */
  orders: Array<{ orderId: number; customerId: number }>;
}

export interface PlanOptions {
  seed: number;
  visitors: number;
  /** Sessions start between startMs and startMs + spanMs. */
  startMs: number;
  spanMs: number;
  /** Share of events delivered after later events of the same visitor (within minutes to hours). */
  lateRate: number;
  /** Share of events delivered twice. */
  duplicateRate: number;
  /** Share of visitors who get one extra event days older than their latest (beyond a 24 h allowed lateness). */
  tooLateRate: number;
  catalog?: Catalog;
}

export const DEFAULT_PLAN: Omit<PlanOptions, 'startMs'> = { seed: 42, visitors: 200, spanMs: 6 * 3600_000, lateRate: 0.05, duplicateRate: 0.03, tooLateRate: 0.02 };

export interface PlannedSend {
  value: ClickValue;
  /** Why it is where it is in the send order, for tests and logs. */
  kind: 'in_order' | 'late' | 'duplicate' | 'beyond_lateness';
}

function syntheticCatalog(rng: Rng): Catalog {
  return {
    products: Array.from({ length: 50 }, (_, i) => ({ productId: i + 1, price: centsToDecimal(rng.cents(199, 49_999)) })),
    customerIds: Array.from({ length: 100 }, (_, i) => i + 1),
    orders: [],
  };
}

const MIN = 60_000;

/** One visitor's sessions in event-time order. */
function visitorEvents(rng: Rng, anon: string, startMs: number, catalog: Catalog, nextOrderId: () => number | null): ClickValue[] {
  const out: ClickValue[] = [];
  let t = startMs;
  let customer: number | null = rng.chance(0.3) && catalog.customerIds.length > 0 ? rng.pick(catalog.customerIds) : null;
  const emit = (type: EventType, extra: Partial<ClickValue> = {}) => {
    out.push({ event_id: randomUUIDFrom(rng), event_type: type, occurred_at: t, anonymous_id: anon, customer_id: customer, product_id: null, quantity: null, unit_price: null, order_id: null, page_url: null, ...extra });
    // Mostly seconds to minutes apart; now and then a pause close to, but under, the 30 minute gap.
    t += rng.chance(0.05) ? rng.int(20 * MIN, 29 * MIN) : rng.int(2_000, 4 * MIN);
  };
  const sessions = rng.chance(0.25) ? rng.int(2, 3) : 1;
  for (let s = 0; s < sessions; s++) {
    if (s > 0) t += rng.chance(0.5) ? rng.int(31 * MIN, 3 * 3600_000) : rng.int(6 * 3600_000, 20 * 3600_000);
    emit('page_view', { page_url: '/' });
    const cart: Array<{ productId: number; price: string; qty: number }> = [];
    for (let v = rng.int(0, 4); v > 0; v--) {
      const p = rng.pick(catalog.products);
      emit('product_view', { product_id: p.productId, page_url: `/products/${p.productId}` });
      if (rng.chance(0.45)) {
        const qty = rng.int(1, 3);
        cart.push({ productId: p.productId, price: p.price, qty });
        emit('add_to_cart', { product_id: p.productId, quantity: qty, unit_price: p.price, page_url: `/products/${p.productId}` });
      }
    }
    if (cart.length > 0 && rng.chance(0.2)) {
      const line = rng.pick(cart);
      emit('remove_from_cart', { product_id: line.productId, quantity: rng.int(1, line.qty), unit_price: line.price, page_url: '/cart' });
    }
    if (cart.length === 0 || !rng.chance(0.55)) continue; // abandoned before checkout
    if (customer === null && catalog.customerIds.length > 0) customer = rng.pick(catalog.customerIds); // logs in to check out
    emit('checkout_started', { page_url: '/checkout' });
    if (!rng.chance(0.65)) continue; // abandoned at checkout
    emit('order_placed', { order_id: nextOrderId(), page_url: '/checkout/done' });
  }
  return out;
}

/** uuid v4 from the seeded generator, so a plan is reproducible. */
function randomUUIDFrom(rng: Rng): string {
  const hex = Array.from({ length: 32 }, () => Math.floor(rng.next() * 16).toString(16)).join('');
  const variant = ((parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

export function planClickstream(opts: PlanOptions): PlannedSend[] {
  const rng = new Rng(opts.seed);
  const catalog = opts.catalog && opts.catalog.products.length > 0 ? opts.catalog : syntheticCatalog(rng);
  const orders = [...catalog.orders];
  let synthetic = 1_000_000_000 + opts.seed * 100_000;
  // Every 10th purchase names no order, as trackers that only know a purchase happened send it
  // (docs/contract.md#2-change-events): it converts its session, and int_check_order finds no order.
  // Counted, not drawn, so a seed plans the same events as before.
  let purchases = 0;
  const nextOrderId = () => (++purchases % 10 === 0 ? null : orders.length > 0 ? orders.shift()!.orderId : synthetic++);
  const sends: Array<PlannedSend & { rank: number }> = [];
  for (let v = 0; v < opts.visitors; v++) {
    const anon = `anon-${randomUUIDFrom(rng)}`;
    const events = visitorEvents(rng, anon, opts.startMs + Math.floor(rng.next() * opts.spanMs), catalog, nextOrderId);
    let lastRank = 0;
    for (const e of events) {
      // rank = when it is sent, in event-time units; a late event is sent minutes to hours after it happened.
      const late = rng.chance(opts.lateRate);
      const rank = e.occurred_at + (late ? rng.int(5 * MIN, 8 * 3600_000) : 0);
      sends.push({ value: e, kind: late ? 'late' : 'in_order', rank });
      lastRank = Math.max(lastRank, rank);
      if (rng.chance(opts.duplicateRate)) {
        const dupRank = e.occurred_at + rng.int(0, 2 * 3600_000);
        sends.push({ value: e, kind: 'duplicate', rank: dupRank });
        lastRank = Math.max(lastRank, dupRank);
      }
    }
    if (rng.chance(opts.tooLateRate)) {
      // Sent after everything else of this visitor, so the watermark is the
      // visitor's last event and this one is more than 24 h behind it.
      const at = events[0]!.occurred_at - rng.int(26 * 3600_000, 72 * 3600_000);
      const e = { ...events[0]!, event_id: randomUUIDFrom(rng), event_type: 'page_view' as const, occurred_at: at, customer_id: null, product_id: null, quantity: null, unit_price: null, order_id: null, page_url: '/old-tab' };
      sends.push({ value: e, kind: 'beyond_lateness', rank: lastRank + 1 });
    }
  }
  sends.sort((a, b) => a.rank - b.rank);
  return sends.map(({ value, kind }) => ({ value, kind }));
}

export async function loadClickValueSchema(): Promise<string> {
  return readFile(new URL('../../schemas/clickstream-event.avsc', import.meta.url), 'utf8');
}

/** Registers `<topic>-value` and returns the schema id used to encode. */
export async function registerClickSchema(registry: SchemaRegistry, topic: string): Promise<number> {
  const { id } = await registry.register({ type: SchemaType.AVRO, schema: await loadClickValueSchema() }, { subject: `${topic}-value` });
  return id;
}

/**
 * Sends planned events as Confluent-wire Avro, keyed by anonymous_id, in
 * plan order (the producer is idempotent with one request in flight, so
 * Kafka keeps that order per partition).
 */
export async function produceClickstream(p: { producer: Producer; admin: Admin; registry: SchemaRegistry; topic: string; partitions?: number; batchSize?: number; replication?: TopicReplication }, sends: readonly PlannedSend[]): Promise<number> {
  await ensureTopic(p.admin, p.topic, p.partitions ?? 3, { replication: p.replication });
  const id = await registerClickSchema(p.registry, p.topic);
  const size = p.batchSize ?? 500;
  for (let i = 0; i < sends.length; i += size) {
    const messages = await Promise.all(sends.slice(i, i + size).map(async (s) => ({
      key: Buffer.from(s.value.anonymous_id, 'utf8'),
      value: await p.registry.encode(id, s.value),
    })));
    await p.producer.send({ topic: p.topic, acks: -1, messages });
  }
  return sends.length;
}
