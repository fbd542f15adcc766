import { formatInstantUs, parseInstantUs } from '../transforms/time.ts';
import { badRequest } from './errors.ts';
import type { CanonicalInstant, NowClock } from './instant.ts';

/**
 * Validation of path and query parameters, pure so the edge cases are unit
 * tested. Everything arrives as text and leaves as a value the queries can
 * use exactly (ids stay decimal strings: int64 does not fit a JS number).
 */

const INT64_MAX = 9_223_372_036_854_775_807n;

/** A customer id: decimal digits only (no sign, no exponent), 0..2^63-1. Returns its canonical decimal text. */
export function parseCustomerId(raw: string): string {
  if (!/^\d{1,25}$/.test(raw)) {
    throw badRequest('INVALID_CUSTOMER_ID', `customer id must be a non-negative integer, got "${truncate(raw)}"`);
  }
  // Up to 18 digits cannot pass int64: no BigInt needed, only leading zeros to drop.
  if (raw.length <= 18) return raw.charCodeAt(0) === 48 ? raw.replace(/^0+(?=\d)/, '') : raw;
  const n = BigInt(raw);
  if (n > INT64_MAX) throw badRequest('INVALID_CUSTOMER_ID', `customer id must fit a signed 64-bit integer, got "${raw}"`);
  return n.toString();
}

const DATE_ONLY = /^\d{4}-\d{2}-\d{2}$/;

/**
 * `as_of`: an ISO-8601 instant with an explicit offset (`2024-05-01T12:00:00Z`,
 * `...+02:00`, up to µs precision) or a bare date, read as midnight UTC. A
 * local time without an offset is refused: which day it falls on would
 * depend on the server's zone. Absent: now. Returns µs since the epoch.
 */
export function parseAsOf(raw: unknown, nowUs: bigint): bigint {
  if (raw === undefined) return nowUs;
  if (typeof raw !== 'string' || raw === '') {
    throw badRequest('INVALID_AS_OF', 'as_of must be given once, as an ISO-8601 instant such as 2024-05-01T00:00:00Z');
  }
  const text = DATE_ONLY.test(raw) ? `${raw}T00:00:00Z` : raw;
  const us = parseInstantUs(text);
  if (us === undefined) {
    throw badRequest('INVALID_AS_OF', `as_of must be an ISO-8601 instant with an offset (e.g. 2024-05-01T00:00:00Z), got "${truncate(raw)}"`);
  }
  return us;
}

/** parseAsOf with its canonical text; now (from the clock) when absent. */
export function readAsOf(raw: unknown, clock: NowClock): CanonicalInstant {
  if (raw === undefined) return clock.read();
  const us = parseAsOf(raw, 0n);
  return { us, text: formatInstantUs(us) };
}

export function nowUs(): bigint {
  return BigInt(Date.now()) * 1000n;
}

export { formatInstantUs };

export const TOP_BY = ['revenue', 'orders', 'items'] as const;
export type TopBy = (typeof TOP_BY)[number];
export const TOP_MAX_LIMIT = 1000;

export interface TopQuery {
  by: TopBy;
  limit: number;
}

/** `by` defaults to revenue, `limit` to 10 (1..1000). */
export function parseTopQuery(query: Record<string, unknown>): TopQuery {
  const by = query.by ?? 'revenue';
  if (typeof by !== 'string' || !(TOP_BY as readonly string[]).includes(by)) {
    throw badRequest('INVALID_QUERY', `by must be one of ${TOP_BY.join(', ')}, got "${truncate(String(by))}"`);
  }
  const rawLimit = query.limit ?? '10';
  if (typeof rawLimit !== 'string' || !/^\d{1,4}$/.test(rawLimit) || Number(rawLimit) < 1 || Number(rawLimit) > TOP_MAX_LIMIT) {
    throw badRequest('INVALID_QUERY', `limit must be an integer from 1 to ${TOP_MAX_LIMIT}, got "${truncate(String(rawLimit))}"`);
  }
  return { by: by as TopBy, limit: Number(rawLimit) };
}

/** Echoing user input back is useful, echoing a megabyte of it is not. */
function truncate(s: string): string {
  return s.length > 64 ? `${s.slice(0, 64)}…` : s;
}
