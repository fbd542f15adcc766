import { describe, expect, it } from 'vitest';
import { validateClickEvent } from '../../consumers/clickstream/validate.ts';
import { ValidationError } from '../../src/errors.ts';
import { classifyLateness } from '../../src/transforms/sessions.ts';
import { planClickstream } from '../../src/generator/clickstream.ts';

const base = {
  event_id: '6F9619FF-8B86-4011-B42D-00C04FC964FF',
  event_type: 'add_to_cart',
  occurred_at: Date.UTC(2026, 0, 2, 3, 4, 5, 678),
  anonymous_id: 'anon-1',
  customer_id: 12n,
  product_id: 7n,
  quantity: 2,
  unit_price: '19.99',
  order_id: null,
  page_url: '/p/7',
};
const key = Buffer.from('anon-1');

describe('validateClickEvent', () => {
  it('normalises a valid event: lowercase uuid, µs time, ids as strings', () => {
    expect(validateClickEvent(base, key)).toEqual({
      eventId: '6f9619ff-8b86-4011-b42d-00c04fc964ff', eventType: 'add_to_cart', occurredUs: BigInt(base.occurred_at) * 1000n,
      anonymousId: 'anon-1', customerId: '12', productId: '7', quantity: 2, unitPrice: '19.99', orderId: null, pageUrl: '/p/7',
    });
  });

  it.each([
    ['a non-uuid event_id', { event_id: 'abc' }, /not a uuid/],
    ['an unknown event_type', { event_type: 'click' }, /event_type/],
    ['a cart event without price', { unit_price: null }, /needs unit_price/],
    ['a cart event with quantity 0', { quantity: 0 }, /quantity > 0/],
    ['a float-looking price', { unit_price: '1e3' }, /not a non-negative decimal/],
    ['a negative price', { unit_price: '-1.00' }, /not a non-negative decimal/],
    ['a time before 2000', { occurred_at: 0 }, /outside/],
    ['a NUL in page_url', { page_url: 'a\u0000b' }, /NUL/],
    ['an anonymous_id over 512 bytes', { anonymous_id: 'é'.repeat(257) }, /longer than 512 bytes/],
  ])('rejects %s', (_what, patch, message) => {
    expect(() => validateClickEvent({ ...base, ...patch }, key)).toThrow(message);
    expect(() => validateClickEvent({ ...base, ...patch }, key)).toThrow(ValidationError);
  });

  it('accepts an order_placed without order_id (the contract allows it)', () => {
    expect(validateClickEvent({ ...base, event_type: 'order_placed', product_id: null, quantity: null, unit_price: null, order_id: null }, key))
      .toMatchObject({ eventType: 'order_placed', orderId: null });
    expect(validateClickEvent({ ...base, event_type: 'order_placed', order_id: 99n }, key)).toMatchObject({ orderId: '99' });
  });

  it('rejects a key other than anonymous_id', () => {
    expect(() => validateClickEvent(base, Buffer.from('someone-else'))).toThrow(/key must equal anonymous_id/);
    expect(() => validateClickEvent(base, null)).toThrow(/key must equal anonymous_id/);
  });
});

describe('planClickstream', () => {
  const opts = { seed: 3, visitors: 300, startMs: Date.UTC(2026, 2, 1), spanMs: 6 * 3600_000, lateRate: 0.1, duplicateRate: 0.05, tooLateRate: 0.2 };

  it('is reproducible from its seed and produces every kind of delivery', () => {
    const a = planClickstream(opts);
    expect(planClickstream(opts)).toEqual(a);
    const kinds = new Set(a.map((s) => s.kind));
    expect([...kinds].sort()).toEqual(['beyond_lateness', 'duplicate', 'in_order', 'late']);
    const types = new Set(a.map((s) => s.value.event_type));
    expect(types.size).toBe(6);
    const purchases = a.filter((s) => s.kind !== 'duplicate' && s.value.event_type === 'order_placed');
    expect(purchases.some((s) => s.value.order_id === null)).toBe(true);
    expect(purchases.some((s) => s.value.order_id !== null)).toBe(true);
  });

  it('marks as beyond_lateness exactly what the consumer classifies so (24 h)', () => {
    const plan = planClickstream(opts);
    const seen = new Set<string>();
    const firstCopies = plan.filter((s) => (seen.has(s.value.event_id) ? false : (seen.add(s.value.event_id), true)));
    const late = classifyLateness(
      firstCopies.map((s) => ({ eventId: s.value.event_id, anonymousId: s.value.anonymous_id, occurredUs: BigInt(s.value.occurred_at) * 1000n })),
      new Map(), 24n * 3600n * 1_000_000n);
    expect([...late].sort()).toEqual(plan.filter((s) => s.kind === 'beyond_lateness').map((s) => s.value.event_id).sort());
  });
});
