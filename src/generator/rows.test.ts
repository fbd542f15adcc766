import { describe, expect, it } from 'vitest';
import { centsToDecimal, Rng } from './rng.ts';
import { CATEGORIES, makeCustomer, makeOrderItems, makeProduct, nextSegment, nextStatus, SEGMENTS } from './rows.ts';

describe('generator rows', () => {
  it('is reproducible from its seed', () => {
    const a = new Rng(7);
    const b = new Rng(7);
    expect(Array.from({ length: 5 }, () => makeCustomer(a, 1))).toEqual(Array.from({ length: 5 }, () => makeCustomer(b, 1)));
  });

  it('formats cents exactly', () => {
    expect(centsToDecimal(0)).toBe('0.00');
    expect(centsToDecimal(5)).toBe('0.05');
    expect(centsToDecimal(123456)).toBe('1234.56');
    expect(centsToDecimal(-7)).toBe('-0.07');
  });

  it('keeps products within the schema limits', () => {
    const rng = new Rng(1);
    for (let i = 1; i <= 500; i++) {
      const p = makeProduct(rng, i);
      expect(Number(p.price)).toBeGreaterThanOrEqual(1.99);
      expect(Number(p.price)).toBeLessThan(1e8);
      expect(p.price).toMatch(/^\d+\.\d{2}$/);
      if (p.rating !== null) expect(Number(p.rating)).toBeLessThanOrEqual(5);
    }
  });

  it('leaves about one product in 20 without a category, the others in the catalogue', () => {
    const rng = new Rng(1);
    const products = Array.from({ length: 400 }, (_, i) => makeProduct(rng, i + 1));
    const uncategorised = products.filter((p) => p.category === null);
    expect(uncategorised.map((p) => p.productId)).toEqual(Array.from({ length: 20 }, (_, i) => (i + 1) * 20));
    for (const p of products) if (p.category !== null) expect(CATEGORIES).toContain(p.category);
  });

  it('orders distinct products with discounts below one', () => {
    const rng = new Rng(3);
    const products = Array.from({ length: 20 }, (_, i) => makeProduct(rng, i + 1));
    for (let i = 0; i < 200; i++) {
      const items = makeOrderItems(rng, products);
      expect(new Set(items.map((x) => x.productId)).size).toBe(items.length);
      for (const it of items) {
        expect(Number(it.discount)).toBeGreaterThanOrEqual(0);
        expect(Number(it.discount)).toBeLessThan(1);
        expect(it.quantity).toBeGreaterThan(0);
      }
    }
  });

  it('moves statuses only forward and segments always change', () => {
    const rng = new Rng(9);
    for (let i = 0; i < 200; i++) {
      expect(['shipped', 'cancelled']).toContain(nextStatus(rng, 'placed'));
      expect(nextStatus(rng, 'shipped')).toBe('delivered');
      expect(nextStatus(rng, 'cancelled')).toBeUndefined();
      const seg = SEGMENTS[i % 4]!;
      const next = nextSegment(rng, seg);
      expect(next).not.toBe(seg);
      expect(SEGMENTS).toContain(next);
    }
  });
});
