import { createHash } from 'node:crypto';
import { cartValueAtEnd, formatDecimal } from './cart.ts';
import { formatInstantUs } from './time.ts';

/**
 * Sessionization of clickstream events (docs/contract.md §3 "Clickstream models"), pure.
 * The consumer feeds it every event of an anonymous_id from a point where a
 * session is known to start (see consumers/clickstream/recompute.ts), so the
 * result equals a batch sessionization over all events; the SQL of
 * consumers/clickstream/batch-recompute.ts is the independent reference.
 */
export const EVENT_TYPES = ['page_view', 'product_view', 'add_to_cart', 'remove_from_cart', 'checkout_started', 'order_placed'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** A gap of more than this between consecutive events starts a new session (docs/contract.md: 30 minutes). */
export const SESSION_GAP_US = 30n * 60n * 1_000_000n;

export interface SessionEvent {
  /** Canonical (lowercase) uuid text: its string order is the uuid's byte order, as Postgres sorts `uuid`. */
  eventId: string;
  eventType: EventType;
  /** µs since the epoch. */
  occurredUs: bigint;
  anonymousId: string;
  /** bigint ids as decimal strings. */
  customerId: string | null;
  productId: string | null;
  quantity: number | null;
  unitPrice: string | null;
  orderId: string | null;
}

export interface Session {
  sessionId: string;
  anonymousId: string;
  customerId: string | null;
  startUs: bigint;
  endUs: bigint;
  /** Exact seconds with 6 decimals, as Postgres `extract(epoch FROM end - start)`. */
  durationSeconds: string;
  eventCount: number;
  pageViews: number;
  productViews: number;
  addToCartCount: number;
  reachedCheckout: boolean;
  converted: boolean;
  /** Cart value at session end, an exact decimal string (src/transforms/cart.ts). */
  cartValue: string;
  /** The session's events in session order. */
  eventIds: string[];
}

/** Session order: occurred_at, then event_id to break ties deterministically. */
export function compareEvents(a: SessionEvent, b: SessionEvent): number {
  if (a.occurredUs !== b.occurredUs) return a.occurredUs < b.occurredUs ? -1 : 1;
  return a.eventId < b.eventId ? -1 : a.eventId > b.eventId ? 1 : 0;
}

export function sessionIdOf(anonymousId: string, startUs: bigint): string {
  return createHash('md5').update(`${anonymousId}-${formatInstantUs(startUs)}`, 'utf8').digest('hex');
}

function seconds(us: bigint): string {
  const whole = us / 1_000_000n;
  const frac = (us % 1_000_000n).toString().padStart(6, '0');
  return `${whole}.${frac}`;
}

function summarize(anonymousId: string, events: SessionEvent[]): Session {
  const first = events[0]!;
  const last = events[events.length - 1]!;
  let customerId: string | null = null;
  const count = (t: EventType) => events.filter((e) => e.eventType === t).length;
  for (const e of events) if (e.customerId !== null) customerId = e.customerId;
  return {
    sessionId: sessionIdOf(anonymousId, first.occurredUs),
    anonymousId,
    customerId,
    startUs: first.occurredUs,
    endUs: last.occurredUs,
    durationSeconds: seconds(last.occurredUs - first.occurredUs),
    eventCount: events.length,
    pageViews: count('page_view'),
    productViews: count('product_view'),
    addToCartCount: count('add_to_cart'),
    reachedCheckout: count('checkout_started') > 0,
    converted: count('order_placed') > 0,
    cartValue: formatDecimal(cartValueAtEnd(events)),
    eventIds: events.map((e) => e.eventId),
  };
}

/**
 * Splits events into sessions per anonymous_id. Input order does not
 * matter; events are sorted by (occurred_at, event_id). Equal timestamps are
 * a gap of 0 and never split a session.
 */
export function sessionize(events: readonly SessionEvent[], gapUs: bigint = SESSION_GAP_US): Session[] {
  const byAnon = new Map<string, SessionEvent[]>();
  for (const e of events) {
    const list = byAnon.get(e.anonymousId);
    if (list) list.push(e);
    else byAnon.set(e.anonymousId, [e]);
  }
  const out: Session[] = [];
  for (const [anon, list] of byAnon) {
    list.sort(compareEvents);
    let current: SessionEvent[] = [];
    for (const e of list) {
      const prev = current[current.length - 1];
      if (prev && e.occurredUs - prev.occurredUs > gapUs) {
        out.push(summarize(anon, current));
        current = [];
      }
      current.push(e);
    }
    if (current.length > 0) out.push(summarize(anon, current));
  }
  return out;
}

/**
 * Where an exact recomputation of one anonymous_id must start when new events
 * arrive whose earliest is at `earliestNewUs`: at the start of the first
 * existing session that ends no earlier than `earliestNewUs - gap` (a new
 * event can merge into it), or at `earliestNewUs` if that is earlier or no
 * such session exists. Sessions ending before that point keep a gap of more
 * than `gap` to everything new, so they cannot change.
 */
export function recomputeFromUs(existing: ReadonlyArray<{ startUs: bigint; endUs: bigint }>, earliestNewUs: bigint, gapUs: bigint = SESSION_GAP_US): bigint {
  let from = earliestNewUs;
  for (const s of existing) {
    if (s.endUs >= earliestNewUs - gapUs && s.startUs < from) from = s.startUs;
  }
  return from;
}

export interface LatenessInput {
  eventId: string;
  anonymousId: string;
  occurredUs: bigint;
}

/**
 * Allowed lateness per anonymous_id. The watermark of an anonymous_id is the
 * latest occurred_at among its accepted events; an event more than
 * `allowedLatenessUs` older than the watermark is beyond the allowed
 * lateness. Because events are keyed by anonymous_id, one partition holds
 * all of an id's events in a fixed order, so replaying the topic classifies
 * every event the same way again. `events` must be in offset order;
 * `watermarks` (from staging) is updated in place.
 */
export function classifyLateness(events: readonly LatenessInput[], watermarks: Map<string, bigint>, allowedLatenessUs: bigint): Set<string> {
  const late = new Set<string>();
  for (const e of events) {
    const wm = watermarks.get(e.anonymousId);
    if (wm !== undefined && e.occurredUs < wm - allowedLatenessUs) {
      late.add(e.eventId);
      continue;
    }
    if (wm === undefined || e.occurredUs > wm) watermarks.set(e.anonymousId, e.occurredUs);
  }
  return late;
}
