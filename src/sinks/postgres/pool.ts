import pg from 'pg';

/**
 * Warehouse connections that never lose precision: timestamps come back as
 * text (pg's default parser turns them into JS Dates and drops microseconds),
 * bigint and numeric as strings, every session in UTC. Type parsers are set
 * per pool, not globally, so other code in the process keeps pg's defaults.
 */
const TEXT_TYPES = new Set([1082 /* date */, 1114 /* timestamp */, 1184 /* timestamptz */, 20 /* int8 */, 1700 /* numeric */]);

const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (TEXT_TYPES.has(oid)) return (v: string) => v;
    return pg.types.getTypeParser(oid, format as 'text');
  },
} as unknown as pg.CustomTypesConfig;

/**
 * JIT is off for these sessions: a consumer batch's statements touch a few
 * thousand rows, but their estimated cost passes jit_above_cost, and
 * compiling them took ~90 ms of a ~140 ms fact_orders statement (auto_explain,
 * bench:consumers). Measured on the full refresh too (docs/benchmarks-consumers.md).
 */
export function createWarehousePool(connectionString: string, max = 4): pg.Pool {
  // A connect that gets no answer (a server in the middle of a restart) fails after 30 s (as does a wait for a free client) and is
  // retried, instead of waiting for ever; keepalive finds a peer that went away without a word.
  return new pg.Pool({
    connectionString, max, types, options: '-c TimeZone=UTC -c jit=off', application_name: 'cdc-warehouse',
    connectionTimeoutMillis: 30_000, keepAlive: true, keepAliveInitialDelayMillis: 10_000,
  });
}

export interface WarehouseSchemas {
  staging: string;
  analytics: string;
  meta: string;
}

export const DEFAULT_WAREHOUSE_SCHEMAS: WarehouseSchemas = { staging: 'staging', analytics: 'analytics', meta: 'cdc_meta' };

const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

/** Quoted schema names for SQL text; names are checked, never interpolated raw. */
export function quoted(s: WarehouseSchemas): { stg: string; an: string; meta: string } {
  for (const n of [s.staging, s.analytics, s.meta]) {
    if (!IDENT.test(n)) throw new Error(`schema name "${n}" is not a plain identifier`);
  }
  return { stg: `"${s.staging}"`, an: `"${s.analytics}"`, meta: `"${s.meta}"` };
}

/** SQL rendering a timestamptz as the canonical µs ISO string (docs/contract.md §3 format). */
export function isoSql(expr: string): string {
  return `to_char(${expr} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
}
