import type pg from 'pg';

/**
 * Multiset comparison of two relations with the same columns (an expected
 * one, usually a temporary table verify filled, and the stored one), in
 * time linear in their size and memory bounded by the number of buckets:
 *
 * 1. Per side, every row is hashed twice with Postgres' own type-aware
 *    record hash (hash_record_extended, seeds 0 and 1) and summed into one
 *    of 2^16 buckets: count, sum of each hash (exact numeric sums, no
 *    wrap-around). Rows equal by the types' equality hash equal (numeric
 *    1.5 and 1.50 too), so equal multisets give equal buckets and a clean
 *    table costs one scan per side and no row comparison.
 * 2. Only the buckets whose count or sums differ are compared row by row:
 *    both sides' rows of those buckets, grouped on every column with +1 /
 *    -1, so a row present m times expected and n times stored leaves m - n
 *    (EXCEPT ALL's answer, NULLs equal as in GROUP BY).
 *
 * Phase 2 is exact. Phase 1 can hide a difference only if a bucket's
 * count and both 64-bit hash sums coincide for different contents: for a
 * single changed value that takes a collision of both hashes at once.
 */
export interface TableDiff {
  table: string;
  /** Expected rows absent from the stored table (counted with multiplicity), and stored rows not expected. */
  missing: number;
  unexpected: number;
  samples: { missing: unknown[]; unexpected: unknown[] };
  /** Buckets whose fingerprints differed (0 when the table is clean). */
  differingBuckets?: number;
  ms?: { recompute?: number; compare: number };
}

const BUCKET_MASK = 0xffff;

function q(col: string): string {
  return `"${col.replace(/"/g, '""')}"`;
}

function rowExpr(cols: string[]): string {
  return `ROW(${cols.map((c) => `r.${q(c)}`).join(', ')})`;
}

function fingerprintsSql(relation: string, cols: string[]): string {
  const row = rowExpr(cols);
  return `SELECT h1 & ${BUCKET_MASK} AS b, count(*) AS n, sum(h1) AS s1, sum(h2) AS s2
          FROM (SELECT hash_record_extended(${row}, 0) AS h1, hash_record_extended(${row}, 1) AS h2 FROM ${relation} r) x
          GROUP BY 1`;
}

/** `expected` and `actual`: table names or parenthesised SELECTs; `cols`: the columns compared, present in both. */
export async function diffRelations(
  client: pg.ClientBase,
  table: string,
  expected: string,
  actual: string,
  cols: string[],
  sampleSize = 5,
): Promise<TableDiff> {
  const started = Date.now();
  const { rows: bad } = await client.query<{ b: number }>(`
    SELECT coalesce(e.b, a.b)::int AS b
    FROM (${fingerprintsSql(expected, cols)}) e FULL JOIN (${fingerprintsSql(actual, cols)}) a ON a.b = e.b
    WHERE e.n IS DISTINCT FROM a.n OR e.s1 IS DISTINCT FROM a.s1 OR e.s2 IS DISTINCT FROM a.s2`);
  if (bad.length === 0) {
    return { table, missing: 0, unexpected: 0, samples: { missing: [], unexpected: [] }, differingBuckets: 0, ms: { compare: Date.now() - started } };
  }
  const list = cols.map(q).join(', ');
  const inBad = `(hash_record_extended(${rowExpr(cols)}, 0) & ${BUCKET_MASK}) IN (SELECT unnest($1::int[]))`;
  const { rows } = await client.query<Record<string, unknown> & { _side: string; _n: string }>(`
    WITH g AS MATERIALIZED (
      SELECT ${list}, sum(_s) AS _d FROM (
        SELECT ${list}, 1 AS _s FROM ${expected} r WHERE ${inBad}
        UNION ALL
        SELECT ${list}, -1 AS _s FROM ${actual} r WHERE ${inBad}
      ) u GROUP BY ${list} HAVING sum(_s) <> 0
    )
    (SELECT 'missing' AS _side, (SELECT sum(_d) FROM g WHERE _d > 0) AS _n, ${list} FROM g WHERE _d > 0 ORDER BY ${list} LIMIT ${Number(sampleSize)})
    UNION ALL
    (SELECT 'unexpected' AS _side, (SELECT -sum(_d) FROM g WHERE _d < 0) AS _n, ${list} FROM g WHERE _d < 0 ORDER BY ${list} LIMIT ${Number(sampleSize)})`,
  [bad.map((r) => r.b)]);
  const side = (s: string) => rows.filter((r) => r._side === s).map(({ _side: _, _n: __, ...row }) => row);
  const count = (s: string) => Number(rows.find((r) => r._side === s)?._n ?? 0);
  return {
    table,
    missing: count('missing'),
    unexpected: count('unexpected'),
    samples: { missing: side('missing'), unexpected: side('unexpected') },
    differingBuckets: bad.length,
    ms: { compare: Date.now() - started },
  };
}
