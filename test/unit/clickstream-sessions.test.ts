import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Rng } from '../../src/generator/rng.ts';
import { cartValueAtEnd, formatDecimal } from '../../src/transforms/cart.ts';
import { classifyLateness, recomputeFromUs, SESSION_GAP_US, sessionIdOf, sessionize, type EventType, type Session, type SessionEvent } from '../../src/transforms/sessions.ts';
import { parseInstantUs } from '../../src/transforms/time.ts';

const MIN = 60n * 1_000_000n;
const T0 = parseInstantUs('2026-03-01T10:00:00Z')!;

let seq = 0;
function ev(anon: string, atMin: number | bigint, type: EventType = 'page_view', extra: Partial<SessionEvent> = {}): SessionEvent {
  seq += 1;
  return {
    eventId: extra.eventId ?? `00000000-0000-4000-8000-${seq.toString(16).padStart(12, '0')}`,
    eventType: type,
    occurredUs: typeof atMin === 'bigint' ? atMin : T0 + BigInt(atMin) * MIN,
    anonymousId: anon,
    customerId: null,
    productId: null,
    quantity: null,
    unitPrice: null,
    orderId: null,
    ...extra,
  };
}

describe('sessionize', () => {
  it('splits only on a gap of more than 30 minutes', () => {
    const s = sessionize([ev('a', 0), ev('a', 30), ev('a', 60), ev('a', 91), ev('b', 0)]);
    const a = s.filter((x) => x.anonymousId === 'a');
    expect(a.map((x) => x.eventCount)).toEqual([3, 1]);
    expect(a[0]!.endUs - a[0]!.startUs).toBe(60n * MIN);
    expect(a[0]!.durationSeconds).toBe('3600.000000');
    expect(s.filter((x) => x.anonymousId === 'b')).toHaveLength(1);
  });

  it('derives session_id as md5(anonymous_id-first occurred_at in µs ISO)', () => {
    const [s] = sessionize([ev('anon-1', T0 + 123_456n), ev('anon-1', T0 + 5n * MIN)]);
    const expected = createHash('md5').update('anon-1-2026-03-01T10:00:00.123456Z').digest('hex');
    expect(s!.sessionId).toBe(expected);
    expect(sessionIdOf('anon-1', T0 + 123_456n)).toBe(expected);
  });

  it('counts, checkout and conversion, last non-null customer by (occurred_at, event_id)', () => {
    const [s] = sessionize([
      ev('a', 0, 'page_view', { customerId: '7' }),
      ev('a', 1, 'product_view', { productId: '1' }),
      ev('a', 2, 'add_to_cart', { eventId: 'ffffffff-0000-4000-8000-000000000000', customerId: '9', productId: '1', quantity: 2, unitPrice: '1.10' }),
      ev('a', 2, 'checkout_started', { eventId: '00000000-ffff-4000-8000-000000000000', customerId: '8' }),
      ev('a', 3, 'page_view'),
    ]);
    expect(s).toMatchObject({ eventCount: 5, pageViews: 2, productViews: 1, addToCartCount: 1, reachedCheckout: true, converted: false, cartValue: '2.20' });
    // Both events at minute 2: the tie goes to the larger event_id, so 9 is last.
    expect(s!.customerId).toBe('9');
  });

  it('is independent of input order', () => {
    const rng = new Rng(7);
    const events = Array.from({ length: 60 }, (_, i) => ev(rng.pick(['x', 'y']), rng.int(0, 400), rng.pick(['page_view', 'order_placed'] as const), { customerId: i % 5 === 0 ? String(i) : null }));
    const shuffled = [...events].sort(() => rng.next() - 0.5);
    expect(sessionize(shuffled)).toEqual(sessionize(events));
  });
});

describe('cartValueAtEnd', () => {
  const line = (eventType: string, quantity: number, unitPrice: string) => ({ eventType, quantity, unitPrice });
  it('is exact where floats are not', () => {
    // 3 × 0.1 + 0.2 is 0.5000000000000001 in floats.
    expect(formatDecimal(cartValueAtEnd([line('add_to_cart', 3, '0.1'), line('add_to_cart', 1, '0.20')]))).toBe('0.50');
  });
  it('subtracts removes and floors the session total at 0, not a running total', () => {
    expect(formatDecimal(cartValueAtEnd([line('add_to_cart', 2, '10.00'), line('remove_from_cart', 1, '10.00')]))).toBe('10.00');
    expect(formatDecimal(cartValueAtEnd([line('remove_from_cart', 3, '5'), line('add_to_cart', 1, '5')]))).toBe('0');
    // A running floor would give 5 here (remove clamps to 0, then add 5); the end floor gives 0 (-5 + 5).
    expect(formatDecimal(cartValueAtEnd([line('remove_from_cart', 1, '5'), line('add_to_cart', 1, '5')]))).toBe('0');
  });
  it('ignores other event types', () => {
    expect(formatDecimal(cartValueAtEnd([line('order_placed', 1, '5'), line('page_view', 1, '9')]))).toBe('0');
  });
});

describe('classifyLateness', () => {
  it('accepts events up to the allowed lateness behind the per-id watermark, flags older ones', () => {
    const wm = new Map<string, bigint>([['a', T0 + 24n * 60n * MIN]]);
    const events = [
      { eventId: 'e1', anonymousId: 'a', occurredUs: T0 }, // exactly 24 h behind: allowed
      { eventId: 'e2', anonymousId: 'a', occurredUs: T0 - 1n }, // 1 µs more: beyond
      { eventId: 'e3', anonymousId: 'b', occurredUs: T0 - 1000n * MIN }, // first of its id: sets the watermark
      { eventId: 'e4', anonymousId: 'b', occurredUs: T0 + 48n * 60n * MIN },
      { eventId: 'e5', anonymousId: 'b', occurredUs: T0 }, // 48 h behind the watermark e4 just raised
    ];
    expect([...classifyLateness(events, wm, 24n * 60n * MIN)]).toEqual(['e2', 'e5']);
    expect(wm.get('b')).toBe(T0 + 48n * 60n * MIN);
  });
});

/**
 * The consumer's incremental rule: when events arrive, recompute only from
 * recomputeFromUs() on. Whatever the arrival order and batching, the
 * sessions must equal a sessionization of all events at once.
 */
describe('incremental recomputation', () => {
  function incremental(batches: SessionEvent[][]): Session[] {
    const store: SessionEvent[] = [];
    let sessions: Session[] = [];
    for (const batch of batches) {
      store.push(...batch);
      const earliest = new Map<string, bigint>();
      for (const e of batch) {
        const cur = earliest.get(e.anonymousId);
        if (cur === undefined || e.occurredUs < cur) earliest.set(e.anonymousId, e.occurredUs);
      }
      for (const [anon, t] of earliest) {
        const mine = sessions.filter((s) => s.anonymousId === anon);
        const from = recomputeFromUs(mine, t);
        sessions = sessions.filter((s) => s.anonymousId !== anon || s.startUs < from);
        sessions.push(...sessionize(store.filter((e) => e.anonymousId === anon && e.occurredUs >= from)));
      }
    }
    return sessions;
  }
  const key = (s: Session[]) => [...s].sort((a, b) => (a.sessionId < b.sessionId ? -1 : 1));

  it('equals a batch sessionization for random arrival orders and batch sizes', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const rng = new Rng(seed);
      const events = Array.from({ length: rng.int(1, 40) }, () =>
        ev(rng.pick(['p', 'q', 'r']), T0 + BigInt(rng.int(0, 300)) * MIN + BigInt(rng.int(0, 3)) * 1000n, rng.pick(['page_view', 'add_to_cart', 'remove_from_cart', 'order_placed'] as const), {
          quantity: 1,
          unitPrice: '2.50',
          customerId: rng.chance(0.3) ? String(rng.int(1, 3)) : null,
        }));
      const order = [...events].sort(() => rng.next() - 0.5);
      const batches: SessionEvent[][] = [];
      for (let i = 0; i < order.length; ) {
        const n = rng.int(1, 5);
        batches.push(order.slice(i, i + n));
        i += n;
      }
      expect(key(incremental(batches)), `seed ${seed}`).toEqual(key(sessionize(events)));
    }
  });

  it('merges two sessions when a late event bridges the gap, and splits nothing it should not', () => {
    const a1 = ev('m', 0);
    const a2 = ev('m', 50);
    const bridge = ev('m', 25);
    expect(incremental([[a1], [a2]])).toHaveLength(2);
    const merged = incremental([[a1], [a2], [bridge]]);
    expect(merged).toHaveLength(1);
    expect(merged[0]!.eventCount).toBe(3);
    expect(recomputeFromUs([{ startUs: T0, endUs: T0 }], T0 + SESSION_GAP_US + 1n)).toBe(T0 + SESSION_GAP_US + 1n);
  });
});
