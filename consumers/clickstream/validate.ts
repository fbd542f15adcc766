import { ValidationError } from '../../src/errors.ts';
import { EVENT_TYPES, type EventType, type SessionEvent } from '../../src/transforms/sessions.ts';

/**
 * Runtime validation of a decoded clickstream event ([contract §2](../../docs/contract.md#2-change-events)) into the
 * shape staging stores. What fails here goes to `<topic>.dlq`; the rules are
 * listed in docs/clickstream.md ("Validation").
 */
/** What sessionization reads, plus the page URL staging also keeps. */
export interface ClickEvent extends SessionEvent {
  pageUrl: string | null;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Non-negative, plain notation; 6 fraction digits is more than any currency needs and keeps typos like "1.999999999" out. */
const PRICE = /^\d{1,15}(\.\d{1,6})?$/;
/** A sanity window for event time: outside it the producer's clock or encoding is broken, and one absurd timestamp would otherwise push its id's watermark (and lateness) years off. */
const MIN_MS = Date.UTC(2000, 0, 1);
const MAX_MS = Date.UTC(2100, 0, 1);

function fail(msg: string): never {
  throw new ValidationError(msg);
}

function optionalId(v: unknown, field: string): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint' || (typeof v === 'number' && Number.isSafeInteger(v))) return BigInt(v).toString();
  return fail(`${field} must be a long or null`);
}

export function validateClickEvent(decoded: unknown, key: Buffer | null): ClickEvent {
  if (typeof decoded !== 'object' || decoded === null) fail('value is not a record');
  const r = decoded as Record<string, unknown>;
  const eventId = typeof r.event_id === 'string' ? r.event_id.toLowerCase() : fail('event_id must be a string');
  if (!UUID.test(eventId)) fail(`event_id "${String(r.event_id).slice(0, 64)}" is not a uuid`);
  const eventType = r.event_type;
  if (typeof eventType !== 'string' || !(EVENT_TYPES as readonly string[]).includes(eventType)) fail(`event_type "${String(eventType)}" is not one of ${EVENT_TYPES.join(', ')}`);
  const ms = typeof r.occurred_at === 'bigint' ? Number(r.occurred_at) : r.occurred_at;
  if (typeof ms !== 'number' || !Number.isSafeInteger(ms)) fail('occurred_at must be timestamp-millis');
  if (ms < MIN_MS || ms >= MAX_MS) fail(`occurred_at ${new Date(ms).toISOString()} is outside 2000-01-01..2099-12-31`);
  const anonymousId = typeof r.anonymous_id === 'string' ? r.anonymous_id : fail('anonymous_id must be a string');
  if (anonymousId.trim() === '') fail('anonymous_id is empty');
  // It is indexed (and hashed into session_id): a huge one would exceed the btree row limit and stall the partition.
  if (Buffer.byteLength(anonymousId, 'utf8') > 512) fail('anonymous_id is longer than 512 bytes');
  // Per-id ordering (and with it the lateness classification) relies on all
  // of an id's events sharing one partition, which only the key guarantees.
  if (key === null || key.toString('utf8') !== anonymousId) fail('message key must equal anonymous_id');
  const quantity = r.quantity === null || r.quantity === undefined ? null : r.quantity;
  if (quantity !== null && (typeof quantity !== 'number' || !Number.isInteger(quantity))) fail('quantity must be an int or null');
  const unitPrice = r.unit_price === null || r.unit_price === undefined ? null : r.unit_price;
  if (unitPrice !== null && (typeof unitPrice !== 'string' || !PRICE.test(unitPrice))) fail(`unit_price "${String(unitPrice).slice(0, 40)}" is not a non-negative decimal string`);
  const pageUrl = r.page_url === null || r.page_url === undefined ? null : r.page_url;
  if (pageUrl !== null && typeof pageUrl !== 'string') fail('page_url must be a string or null');
  const pageUrlText = pageUrl as string | null;
  // Postgres text cannot hold NUL; refusing here keeps the whole slice from failing in the database.
  if (anonymousId.includes('\u0000') || pageUrlText?.includes('\u0000')) fail('anonymous_id and page_url must not contain NUL characters');
  const ev: ClickEvent = {
    eventId,
    eventType: eventType as EventType,
    occurredUs: BigInt(ms) * 1000n,
    anonymousId,
    customerId: optionalId(r.customer_id, 'customer_id'),
    productId: optionalId(r.product_id, 'product_id'),
    quantity: quantity as number | null,
    unitPrice: unitPrice as string | null,
    orderId: optionalId(r.order_id, 'order_id'),
    pageUrl: pageUrlText,
  };
  // Cart events carry the money of int_cart_value: without all three fields
  // the cart value would be silently wrong, so they are refused instead.
  if (ev.eventType === 'add_to_cart' || ev.eventType === 'remove_from_cart') {
    if (ev.productId === null) fail(`${ev.eventType} needs product_id`);
    if (ev.quantity === null || ev.quantity <= 0) fail(`${ev.eventType} needs a quantity > 0`);
    if (ev.unitPrice === null) fail(`${ev.eventType} needs unit_price`);
  }
  if (ev.eventType === 'product_view' && ev.productId === null) fail('product_view needs product_id');
  // order_placed may name no order (docs/contract.md#2-change-events): many trackers only know that a
  // purchase happened. It still converts its session; int_check_order then says the order does not exist.
  return ev;
}
