import type pg from 'pg';
import { TABLES, TABLE_NAMES, type TableName } from '../consumer/tables.ts';
import { isoSql } from '../sinks/postgres/pool.ts';

/**
 * `verify --source`: staging against the source database (SPEC §3: stg_<table>
 * holds exactly the current source rows). The two live in different
 * databases, so both sides are read in primary-key order, in keyset pages,
 * and merged: memory stays bounded whatever the table size. Values are
 * compared in one canonical text form (µs UTC timestamps, numerics without
 * trailing zeros) so `19.90` and `19.9` count as the same price.
 * Only meaningful when the pipeline is caught up and the source is quiet.
 */
export interface SourceTableDiff {
  table: string;
  sourceRows: number;
  stagingRows: number;
  /** In the source, not in staging. */
  missing: number;
  /** In staging, not in the source. */
  unexpected: number;
  /** Same key, different values. */
  differing: number;
  samples: { missing: string[]; unexpected: string[]; differing: string[] };
}

interface Side {
  client: pg.ClientBase;
  /** Quoted schema and table prefix: `"public".` or `"staging".stg_`. */
  prefix: string;
}

type KeyedRow = { key: bigint[]; text: string };

/**
 * A source column the warehouse does not model (added later), compared too:
 * staging follows such columns (docs/consumers.md, "Schema changes").
 * `inStaging` false: staging has not seen it yet, so its values count as null.
 */
export interface ExtraCompareColumn {
  name: string;
  /** The source column's type (format_type). */
  type: string;
  inStaging: boolean;
  /** Staging's type for it, when it has the column (a retyped source column keeps its first type there). */
  stagingType?: string;
}

function textOf(expr: string, type: string): string {
  if (type === 'timestamp with time zone') return isoSql(expr);
  if (type.startsWith('numeric')) return `trim_scale(${expr})::text`;
  if (type === 'json' || type === 'jsonb') return `(${expr})::jsonb::text`;
  return `(${expr})::text`;
}

function selectList(table: TableName, extras: readonly ExtraCompareColumn[], staging: boolean): string {
  return [...Object.entries(TABLES[table].columns).map(([c, k]) =>
    k === 'timestamptz' ? `${isoSql(c)} AS ${c}` : k === 'numeric' ? `trim_scale(${c})::text AS ${c}` : `${c}::text AS ${c}`),
  ...extras.map((x) => (staging && !x.inStaging ? `NULL::text AS "${x.name}"` : `${textOf(`t."${x.name}"`, staging ? x.stagingType ?? x.type : x.type)} AS "${x.name}"`))].join(', ');
}

/** Columns of a table beyond the modelled ones, with their types. */
async function columnsBeyondSpec(client: pg.ClientBase, qualified: string, table: TableName, skip: ReadonlySet<string>): Promise<Map<string, string>> {
  const { rows } = await client.query<{ attname: string; type: string }>(
    `SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    [qualified]);
  return new Map(rows.filter((r) => !(r.attname in TABLES[table].columns) && !skip.has(r.attname)).map((r) => [r.attname, r.type]));
}

/** Staging's own columns, never source columns. */
const STAGING_OWN = new Set(['_source_lsn', '_ingested_at', 'email_normalized', 'full_name']);

async function* rowsInKeyOrder(side: Side, table: TableName, pageSize: number, extras: readonly ExtraCompareColumn[] = [], staging = false): AsyncGenerator<KeyedRow> {
  const spec = TABLES[table];
  const cols = [...Object.keys(spec.columns), ...extras.map((x) => x.name)];
  // Qualified: a bare name in ORDER BY would pick the ::text output column and sort '10' before '9'.
  const keyList = spec.key.map((k) => `t.${k}`).join(', ');
  let after: string[] | null = null;
  for (;;) {
    const where: string = after ? `WHERE (${keyList}) > (${spec.key.map((_, i) => `$${i + 1}::bigint`).join(', ')})` : '';
    const res: pg.QueryResult<Record<string, string | null>> = await side.client.query(
      `SELECT ${selectList(table, extras, staging)} FROM ${side.prefix}${table} t ${where} ORDER BY ${keyList} LIMIT ${pageSize}`, after ?? []);
    const rows = res.rows;
    for (const r of rows) yield { key: spec.key.map((k) => BigInt(r[k]!)), text: JSON.stringify(cols.map((c) => r[c] ?? null)) };
    if (rows.length < pageSize) return;
    const last: Record<string, string | null> = rows[rows.length - 1]!;
    after = spec.key.map((k) => last[k]!);
  }
}

function compareKeys(a: bigint[], b: bigint[]): number {
  for (let i = 0; i < a.length; i++) {
    if (a[i]! !== b[i]!) return a[i]! < b[i]! ? -1 : 1;
  }
  return 0;
}

export async function diffTable(source: Side, staging: Side, table: TableName, opts: { pageSize?: number; sampleSize?: number; extras?: readonly ExtraCompareColumn[] } = {}): Promise<SourceTableDiff> {
  const pageSize = opts.pageSize ?? 5000;
  const sampleSize = opts.sampleSize ?? 5;
  const d: SourceTableDiff = { table, sourceRows: 0, stagingRows: 0, missing: 0, unexpected: 0, differing: 0, samples: { missing: [], unexpected: [], differing: [] } };
  const note = (kind: 'missing' | 'unexpected' | 'differing', key: bigint[]) => {
    d[kind]++;
    if (d.samples[kind].length < sampleSize) d.samples[kind].push(key.join(','));
  };
  const src = rowsInKeyOrder(source, table, pageSize, opts.extras);
  const stg = rowsInKeyOrder(staging, table, pageSize, opts.extras, true);
  let a = await src.next();
  let b = await stg.next();
  while (!a.done || !b.done) {
    const cmp = a.done ? 1 : b.done ? -1 : compareKeys(a.value.key, b.value.key);
    if (cmp < 0 && !a.done) {
      d.sourceRows++;
      note('missing', a.value.key);
      a = await src.next();
    } else if (cmp > 0 && !b.done) {
      d.stagingRows++;
      note('unexpected', b.value.key);
      b = await stg.next();
    } else if (!a.done && !b.done) {
      d.sourceRows++;
      d.stagingRows++;
      if (a.value.text !== b.value.text) note('differing', a.value.key);
      a = await src.next();
      b = await stg.next();
    }
  }
  return d;
}

export async function diffStagingWithSource(
  source: pg.ClientBase, sourceSchema: string, staging: pg.ClientBase, stagingSchema: string, opts: { pageSize?: number; sampleSize?: number; onTable?: (table: string) => void } = {},
): Promise<SourceTableDiff[]> {
  for (const n of [sourceSchema, stagingSchema]) {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(n)) throw new Error(`schema name "${n}" is not a plain identifier`);
  }
  const out: SourceTableDiff[] = [];
  for (const t of TABLE_NAMES) {
    const inSource = await columnsBeyondSpec(source, `"${sourceSchema}".${t}`, t, new Set());
    const inStaging = await columnsBeyondSpec(staging, `"${stagingSchema}".stg_${t}`, t, STAGING_OWN);
    const extras = [...inSource].filter(([c]) => !STAGING_OWN.has(c)).map(([name, type]) => ({ name, type, inStaging: inStaging.has(name), stagingType: inStaging.get(name) }));
    out.push(await diffTable({ client: source, prefix: `"${sourceSchema}".` }, { client: staging, prefix: `"${stagingSchema}".stg_` }, t, { pageSize: opts.pageSize, sampleSize: opts.sampleSize, extras }));
    opts.onTable?.(t);
  }
  return out;
}
