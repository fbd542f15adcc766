import { describe, expect, it } from 'vitest';
import { recencyAt, DEFAULT_RECENCY_THRESHOLDS } from '../../src/api/recency.ts';
import { parseInstantUs } from '../../src/transforms/time.ts';

const us = (iso: string) => parseInstantUs(iso)!;
const DAY = 86_400_000_000n;
const last = us('2024-01-01T12:00:00.000000Z');

describe('recencyAt', () => {
  it('counts whole days, rounding down', () => {
    expect(recencyAt(last, last).daysSinceLastOrder).toBe(0);
    expect(recencyAt(last, last + DAY - 1n).daysSinceLastOrder).toBe(0);
    expect(recencyAt(last, last + DAY).daysSinceLastOrder).toBe(1);
    expect(recencyAt(last, us('2024-03-01T11:59:59.999999Z')).daysSinceLastOrder).toBe(59);
    expect(recencyAt(last, us('2024-03-01T12:00:00Z')).daysSinceLastOrder).toBe(60);
  });

  it('puts each boundary day in the lower segment (<= 30 active, <= 90 cooling, <= 180 at_risk)', () => {
    const seg = (days: bigint, extraUs = 0n) => recencyAt(last, last + days * DAY + extraUs).recencySegment;
    expect(seg(0n)).toBe('active');
    expect(seg(30n)).toBe('active');
    // 30 days and almost another one is still 30 whole days.
    expect(seg(30n, DAY - 1n)).toBe('active');
    expect(seg(31n)).toBe('cooling');
    expect(seg(90n)).toBe('cooling');
    expect(seg(91n)).toBe('at_risk');
    expect(seg(180n)).toBe('at_risk');
    expect(seg(181n)).toBe('churned');
    expect(seg(5000n)).toBe('churned');
  });

  it('is exact to the microsecond across the boundary', () => {
    const boundary = last + 31n * DAY;
    expect(recencyAt(last, boundary - 1n)).toEqual({ daysSinceLastOrder: 30, recencySegment: 'active' });
    expect(recencyAt(last, boundary)).toEqual({ daysSinceLastOrder: 31, recencySegment: 'cooling' });
  });

  it('floors an as-of before the last order to a negative day count, still active', () => {
    expect(recencyAt(last, last - 1n)).toEqual({ daysSinceLastOrder: -1, recencySegment: 'active' });
    expect(recencyAt(last, last - DAY)).toEqual({ daysSinceLastOrder: -1, recencySegment: 'active' });
    expect(recencyAt(last, last - DAY - 1n).daysSinceLastOrder).toBe(-2);
  });

  it('uses configured thresholds', () => {
    const t = { activeDays: 7, coolingDays: 14, atRiskDays: 28 };
    expect(recencyAt(last, last + 7n * DAY, t).recencySegment).toBe('active');
    expect(recencyAt(last, last + 8n * DAY, t).recencySegment).toBe('cooling');
    expect(recencyAt(last, last + 15n * DAY, t).recencySegment).toBe('at_risk');
    expect(recencyAt(last, last + 29n * DAY, t).recencySegment).toBe('churned');
    expect(DEFAULT_RECENCY_THRESHOLDS).toEqual({ activeDays: 30, coolingDays: 90, atRiskDays: 180 });
  });

  it('counts UTC days across a DST change in any zone', () => {
    // Europe's spring-forward night is inside this range; instants are UTC, so every day is 24 h.
    expect(recencyAt(us('2024-03-30T12:00:00Z'), us('2024-04-01T12:00:00+00:00')).daysSinceLastOrder).toBe(2);
    expect(recencyAt(us('2024-03-30T12:00:00Z'), us('2024-04-01T13:00:00+01:00')).daysSinceLastOrder).toBe(2);
  });
});
