/**
 * Recency depends on the clock, not on events (SPEC §3), so it is never
 * stored: the API derives it from `last_order_date` at read time against an
 * as-of instant. Pure, so the thresholds and the day arithmetic are tested
 * without a server.
 */
export type RecencySegment = 'active' | 'cooling' | 'at_risk' | 'churned';

export interface RecencyThresholds {
  /** days_since_last_order <= activeDays: active */
  activeDays: number;
  /** <= coolingDays: cooling */
  coolingDays: number;
  /** <= atRiskDays: at_risk; beyond: churned */
  atRiskDays: number;
}

export const DEFAULT_RECENCY_THRESHOLDS: RecencyThresholds = { activeDays: 30, coolingDays: 90, atRiskDays: 180 };

export interface Recency {
  daysSinceLastOrder: number;
  recencySegment: RecencySegment;
}

const US_PER_DAY = 86_400_000_000n;

/**
 * Whole days elapsed from the last order to `asOfUs` (both µs since the
 * epoch), rounded down like the warehouse view's floor(epoch / 86400): 23 h
 * is day 0, 30 days and 23 h is day 30. An as-of before the last order gives
 * a negative count (floored, so 1 µs before is -1), which is still "active".
 * Timestamps are UTC instants, so there are no DST-length days to handle.
 */
export function recencyAt(lastOrderUs: bigint, asOfUs: bigint, t: RecencyThresholds = DEFAULT_RECENCY_THRESHOLDS): Recency {
  const diff = asOfUs - lastOrderUs;
  // bigint division truncates toward zero; floor it for negative differences.
  let days = diff / US_PER_DAY;
  if (diff < 0n && diff % US_PER_DAY !== 0n) days -= 1n;
  const d = Number(days);
  const recencySegment: RecencySegment =
    d <= t.activeDays ? 'active' : d <= t.coolingDays ? 'cooling' : d <= t.atRiskDays ? 'at_risk' : 'churned';
  return { daysSinceLastOrder: d, recencySegment };
}
