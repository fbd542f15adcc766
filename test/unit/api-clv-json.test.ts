import Fastify from 'fastify';
import { afterAll, describe, expect, it } from 'vitest';
import { clvJson, clvResponseSchema, toResponse, type ClvRecord } from '../../src/api/clv-record.ts';
import { DEFAULT_RECENCY_THRESHOLDS } from '../../src/api/recency.ts';

/**
 * clvJson is what the fast lane answers with; the Fastify route answers with
 * its compiled serializer of toResponse(...). Both are held side by side here
 * over records with every string shape the escaping has to get right.
 */

const base: ClvRecord = {
  customerId: '42', customerKey: '8b0a44048f58988b486bdd0d245b22a8', customerSegment: 'gold',
  totalOrders: 3, totalItems: 7, totalRevenue: '12345678901234.10', avgOrderValue: '4115226300411.37',
  firstOrderDate: '2023-06-01T08:30:00.123456Z', lastOrderDate: '2024-01-01T12:00:00.123456Z',
  customerLifetimeDays: 214, valueSegment: 'high', frequencySegment: 'repeat', version: '7',
};

const odd = ['', 'a"b', 'back\\slash', 'tab\there', 'nl\n', '\u0000\u001f', 'é ü 中文', '😀', 'lone \ud800 high', 'lone \udfff low',
  'x'.repeat(41), `${'y'.repeat(45)}"`, 'z'.repeat(6000), '</script>', '\u2028\u2029'];

const records: ClvRecord[] = [
  base,
  { ...base, customerKey: null, customerSegment: null },
  { ...base, totalOrders: 0, totalItems: 9_007_199_254_740_993, customerLifetimeDays: -3, version: '9223372036854775807' },
  { ...base, totalItems: 1e21 },
  ...odd.map((s, i) => ({ ...base, customerKey: s, customerSegment: s, valueSegment: s, frequencySegment: odd[(i + 1) % odd.length]!, totalRevenue: s })),
];

const asOfs = [
  { us: 1_709_251_200_000_000n, text: '2024-03-01T00:00:00.000000Z' },
  { us: 1_704_110_400_123_455n, text: '2024-01-01T12:00:00.123455Z' },
  { us: 0n, text: '1970-01-01T00:00:00.000000Z' },
];

const app = Fastify();
let current: { r: ClvRecord; i: number; source: 'redis' | 'postgres' } = { r: base, i: 0, source: 'redis' };
app.get('/x', { schema: { response: { 200: clvResponseSchema } } }, async () => toResponse(current.r, asOfs[current.i]!, DEFAULT_RECENCY_THRESHOLDS, current.source));
afterAll(() => app.close());

describe('clvJson', () => {
  it('writes the bytes of the route\'s compiled serializer, for every record, as-of and source', async () => {
    let compared = 0;
    for (const r of records) {
      for (const [i, asOf] of asOfs.entries()) {
        for (const source of ['redis', 'postgres'] as const) {
          current = { r, i, source };
          const res = await app.inject({ method: 'GET', url: '/x' });
          expect(res.statusCode).toBe(200);
          expect(clvJson(r, asOf, DEFAULT_RECENCY_THRESHOLDS, source)).toBe(res.body);
          compared++;
        }
      }
    }
    expect(compared).toBe(records.length * asOfs.length * 2);
  });

  it('is JSON with the recency computed against the as-of', () => {
    const body = JSON.parse(clvJson(base, asOfs[0]!, DEFAULT_RECENCY_THRESHOLDS, 'redis'));
    expect(body).toMatchObject({ days_since_last_order: 59, recency_segment: 'cooling', as_of: '2024-03-01T00:00:00.000000Z', source: 'redis' });
  });
});
