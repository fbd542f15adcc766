import { readInstant, type CanonicalInstant } from './instant.ts';
import { recencyAt, type RecencySegment, type RecencyThresholds } from './recency.ts';

/**
 * One customer's CLV row (SPEC §3, analytics.customer_lifetime_value) as the
 * API holds it, whichever store it came from. Money stays a decimal string
 * and instants are canonical `YYYY-MM-DDTHH:MM:SS.ffffffZ` text, so a figure
 * read from Redis and the same figure read from Postgres render identically.
 */
export interface ClvRecord {
  customerId: string;
  customerKey: string | null;
  customerSegment: string | null;
  totalOrders: number;
  totalItems: number;
  totalRevenue: string;
  avgOrderValue: string;
  firstOrderDate: string;
  lastOrderDate: string;
  customerLifetimeDays: number;
  valueSegment: string;
  frequencySegment: string;
  /** Orders writes of this row (the consumers' version sequence); decimal text, it is a bigint. */
  version: string;
}

/** The JSON body of GET /customers/:id/clv, field names as in SPEC §3. */
export interface ClvResponse {
  customer_id: string;
  customer_key: string | null;
  customer_segment: string | null;
  total_orders: number;
  total_items: number;
  total_revenue: string;
  avg_order_value: string;
  first_order_date: string;
  last_order_date: string;
  customer_lifetime_days: number;
  value_segment: string;
  frequency_segment: string;
  version: string;
  as_of: string;
  days_since_last_order: number;
  recency_segment: RecencySegment;
  source: 'redis' | 'postgres';
}

export function toResponse(r: ClvRecord, asOf: CanonicalInstant, thresholds: RecencyThresholds, source: 'redis' | 'postgres'): ClvResponse {
  const last = readInstant(r.lastOrderDate);
  // Both stores hand over canonical instants; anything else is a bug upstream, not a client error.
  if (last === undefined) throw new Error(`customer ${r.customerId}: last_order_date "${r.lastOrderDate}" is not an instant`);
  const rec = recencyAt(last.us, asOf.us, thresholds);
  return {
    customer_id: r.customerId,
    customer_key: r.customerKey,
    customer_segment: r.customerSegment,
    total_orders: r.totalOrders,
    total_items: r.totalItems,
    total_revenue: r.totalRevenue,
    avg_order_value: r.avgOrderValue,
    first_order_date: r.firstOrderDate,
    last_order_date: r.lastOrderDate,
    customer_lifetime_days: r.customerLifetimeDays,
    value_segment: r.valueSegment,
    frequency_segment: r.frequencySegment,
    version: r.version,
    as_of: asOf.text,
    days_since_last_order: rec.daysSinceLastOrder,
    recency_segment: rec.recencySegment,
    source,
  };
}

const str = JSON.stringify;
const orNull = (s: string | null) => (s === null ? 'null' : JSON.stringify(s));
/** An integer as the compiled serializer writes one (fast-json-stringify's asInteger: truncated, never NaN). */
function int(n: number): string {
  if (Number.isInteger(n)) return `${n}`;
  const t = Math.trunc(n);
  if (!Number.isFinite(t)) throw new Error(`the value "${n}" cannot be converted to an integer`);
  return `${t}`;
}

/**
 * toResponse(...) rendered as the route's compiled serializer (clvResponseSchema)
 * renders it, byte for byte, without the intermediate object: the lookup fast
 * lane (src/api/fast-lane.ts) answers with this. Fields in the schema's order;
 * strings escaped by JSON.stringify, which is what fast-json-stringify does
 * for any string that needs it. test/unit/api-clv-json.test.ts holds the two
 * side by side.
 */
export function clvJson(r: ClvRecord, asOf: CanonicalInstant, thresholds: RecencyThresholds, source: 'redis' | 'postgres'): string {
  const last = readInstant(r.lastOrderDate);
  if (last === undefined) throw new Error(`customer ${r.customerId}: last_order_date "${r.lastOrderDate}" is not an instant`);
  const rec = recencyAt(last.us, asOf.us, thresholds);
  return `{"customer_id":${str(r.customerId)},"customer_key":${orNull(r.customerKey)},"customer_segment":${orNull(r.customerSegment)}`
    + `,"total_orders":${int(r.totalOrders)},"total_items":${int(r.totalItems)},"total_revenue":${str(r.totalRevenue)}`
    + `,"avg_order_value":${str(r.avgOrderValue)},"first_order_date":${str(r.firstOrderDate)},"last_order_date":${str(r.lastOrderDate)}`
    + `,"customer_lifetime_days":${int(r.customerLifetimeDays)},"value_segment":${str(r.valueSegment)}`
    + `,"frequency_segment":${str(r.frequencySegment)},"version":${str(r.version)},"as_of":${str(asOf.text)}`
    + `,"days_since_last_order":${int(rec.daysSinceLastOrder)},"recency_segment":"${rec.recencySegment}","source":"${source}"}`;
}

/** fast-json-stringify schema of ClvResponse: faster than JSON.stringify and it never leaks extra fields. */
export const clvResponseSchema = {
  type: 'object',
  required: [
    'customer_id', 'customer_key', 'customer_segment', 'total_orders', 'total_items', 'total_revenue',
    'avg_order_value', 'first_order_date', 'last_order_date', 'customer_lifetime_days', 'value_segment',
    'frequency_segment', 'version', 'as_of', 'days_since_last_order', 'recency_segment', 'source',
  ],
  properties: {
    customer_id: { type: 'string' },
    customer_key: { type: ['string', 'null'] },
    customer_segment: { type: ['string', 'null'] },
    total_orders: { type: 'integer' },
    total_items: { type: 'integer' },
    total_revenue: { type: 'string' },
    avg_order_value: { type: 'string' },
    first_order_date: { type: 'string' },
    last_order_date: { type: 'string' },
    customer_lifetime_days: { type: 'integer' },
    value_segment: { type: 'string' },
    frequency_segment: { type: 'string' },
    version: { type: 'string' },
    as_of: { type: 'string' },
    days_since_last_order: { type: 'integer' },
    recency_segment: { type: 'string' },
    source: { type: 'string' },
  },
} as const;
