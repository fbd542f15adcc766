import type pg from 'pg';
import { compareOrder, type RowChange } from '../../src/consumer/envelope.ts';
import { TABLES, rowKey, type Row, type TableName, type TableSpec } from '../../src/consumer/tables.ts';
import { formatInstantUs } from '../../src/transforms/time.ts';
import { isoSql, quoted, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';

/**
 * Applies changes to staging and the history tables. Staging keeps only the
 * last change per key (what the row is now); the order guard (and a tombstone
 * per deleted key) makes redelivery and per-key replays no-ops. History keeps
 * every change, keyed (key, lsn), ranked by (seq, lsn).
 *
 * The guard compares (`_source_seq`, `_source_lsn`), the change's commit-order
 * key (RowChange.seq, see envelope.ts), never the LSN alone: a transaction
 * that started before another and committed after it has the lower LSNs.
 */
const SQL_TYPE: Record<string, string> = { bigint: 'bigint', int: 'int', text: 'text', numeric: 'numeric', timestamptz: 'timestamptz' };

/** Source columns beyond the modelled ones that staging follows (name, Postgres type); see ensureExtraColumns. */
export type ExtraColumns = ReadonlyArray<readonly [string, string]>;

function recordsetDef(spec: TableSpec, extra: string, extras: ExtraColumns = []): string {
  return [...Object.entries(spec.columns).map(([c, k]) => `${c} ${SQL_TYPE[k]}`), ...extras.map(([c, t]) => `"${c}" ${t}`)].join(', ') + extra;
}

function upsertSql(stg: string, spec: TableSpec, extras: ExtraColumns = []): string {
  const cols = [...Object.keys(spec.columns), ...extras.map(([c]) => `"${c}"`)];
  const keyJoin = spec.key.map((k) => `s.${k} = r.${k}`).join(' AND ');
  const resolved = cols.map((c) => (spec.key.includes(c) ? `r.${c}` : `CASE WHEN '${c.replaceAll('"', '')}' = ANY(r._unavailable) THEN s.${c} ELSE r.${c} END AS ${c}`));
  const derivedCols = spec.name === 'customers' ? ', email_normalized, full_name' : '';
  const derivedVals = spec.name === 'customers' ? ', lower(btrim(x.email)), x.first_name || \' \' || x.last_name' : '';
  const tbl = `${stg}.stg_${spec.name}`;
  return `
    INSERT INTO ${tbl} (${cols.join(', ')}${derivedCols}, _source_seq, _source_lsn, _ingested_at)
    SELECT ${cols.map((c) => `x.${c}`).join(', ')}${derivedVals}, x._seq, x._lsn, now()
    FROM (
      SELECT ${resolved.join(', ')}, r._seq, r._lsn
      FROM jsonb_to_recordset($1::jsonb) AS r(${recordsetDef(spec, ', _seq bigint, _lsn bigint, _unavailable text[]', extras)})
      LEFT JOIN ${tbl} s ON ${keyJoin}
      WHERE NOT EXISTS (SELECT 1 FROM ${stg}.stg_tombstones t
                        WHERE t.table_name = '${spec.name}' AND t.row_key = concat_ws(',', ${spec.key.map((k) => `r.${k}`).join(', ')})
                          AND (t._source_seq, t._source_lsn) > (r._seq, r._lsn))
    ) x
    ON CONFLICT (${spec.key.join(', ')}) DO UPDATE SET
      ${[...cols.filter((c) => !spec.key.includes(c)), ...(spec.name === 'customers' ? ['email_normalized', 'full_name'] : []), '_source_seq', '_source_lsn', '_ingested_at']
        .map((c) => `${c} = EXCLUDED.${c}`).join(', ')}
    WHERE (${tbl}._source_seq, ${tbl}._source_lsn) <= (EXCLUDED._source_seq, EXCLUDED._source_lsn)`;
}

function deleteSql(stg: string, spec: TableSpec): string {
  const keyDef = spec.key.map((k) => `${k} bigint`).join(', ');
  const tbl = `${stg}.stg_${spec.name}`;
  return `
    WITH r AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(${keyDef}, _seq bigint, _lsn bigint)),
    del AS (
      DELETE FROM ${tbl} s USING r WHERE ${spec.key.map((k) => `s.${k} = r.${k}`).join(' AND ')}
        AND (s._source_seq, s._source_lsn) <= (r._seq, r._lsn)
    )
    INSERT INTO ${stg}.stg_tombstones AS t (table_name, row_key, _source_seq, _source_lsn)
    SELECT '${spec.name}', concat_ws(',', ${spec.key.map((k) => `r.${k}`).join(', ')}), r._seq, r._lsn FROM r
    ON CONFLICT (table_name, row_key) DO UPDATE SET _source_seq = EXCLUDED._source_seq, _source_lsn = EXCLUDED._source_lsn
      WHERE (t._source_seq, t._source_lsn) < (EXCLUDED._source_seq, EXCLUDED._source_lsn)`;
}

/** Current staging rows of a table as canonical text rows (for expanding a truncate into deletes). */
export async function stagingRows(client: pg.ClientBase, schemas: WarehouseSchemas, table: TableName): Promise<Row[]> {
  const { stg } = quoted(schemas);
  const spec = TABLES[table];
  const select = Object.entries(spec.columns)
    .map(([c, k]) => (k === 'timestamptz' ? `${isoSql(c)} AS ${c}` : `${c}::text AS ${c}`))
    .join(', ');
  const { rows } = await client.query<Row>(`SELECT ${select} FROM ${stg}.stg_${table}`);
  return rows;
}

/** A truncate becomes a delete of every row staging holds at that point, at the truncate's LSN and commit time. */
export async function expandTruncate(client: pg.ClientBase, schemas: WarehouseSchemas, t: RowChange): Promise<RowChange[]> {
  const rows = await stagingRows(client, schemas, t.table);
  return rows.map((row) => ({ ...t, op: 'd' as const, before: row, after: null, unavailable: [] }));
}

function jsonRow(ch: RowChange, row: Row): Record<string, unknown> {
  return { ...row, _seq: ch.seq.toString(), _lsn: ch.lsn.toString(), _unavailable: ch.unavailable };
}

async function appendHistory(client: pg.ClientBase, stg: string, changes: RowChange[], extras: ReadonlyMap<TableName, ExtraColumns>): Promise<void> {
  // One history row per (key, lsn); if one LSN carries two changes of a key
  // (a capture stamping commit LSNs), the later one in stream order wins.
  const customers = new Map<string, Record<string, unknown>>();
  const orders = new Map<string, Record<string, unknown>>();
  for (const ch of changes) {
    const img = ch.op === 'd' ? ch.before : ch.after;
    if (!img || ch.op === 't') continue;
    const base = { _seq: ch.seq.toString(), _lsn: ch.lsn.toString(), _op: ch.op, _committed: formatInstantUs(ch.commitUs), _unavailable: ch.unavailable };
    if (ch.table === 'customers') customers.set(`${img.customer_id}/${ch.lsn}`, { ...img, ...base });
    if (ch.table === 'orders') orders.set(`${img.order_id}/${ch.lsn}`, { ...img, ...base });
  }
  if (customers.size > 0) {
    const ex = extras.get('customers') ?? [];
    const names = ex.map(([c]) => `"${c}"`);
    await client.query(`
      INSERT INTO ${stg}.customer_changes (customer_id, lsn, seq, op, updated_at, committed_at, customer_segment, email_normalized, full_name${names.map((c) => `, ${c}`).join('')})
      SELECT x.customer_id, x._lsn, x._seq, x._op, x.updated_at, x._committed, x.customer_segment, lower(btrim(x.email)), x.first_name || ' ' || x.last_name${names.map((c) => `, x.${c}`).join('')}
      FROM (
        SELECT r.customer_id, r._lsn, r._seq, r._op, r._committed, r.updated_at, r.customer_segment${names.map((c) => `, r.${c}`).join('')},
               CASE WHEN 'email' = ANY(r._unavailable) THEN s.email ELSE r.email END AS email,
               CASE WHEN 'first_name' = ANY(r._unavailable) THEN s.first_name ELSE r.first_name END AS first_name,
               CASE WHEN 'last_name' = ANY(r._unavailable) THEN s.last_name ELSE r.last_name END AS last_name
        FROM jsonb_to_recordset($1::jsonb) AS r(customer_id bigint, _lsn bigint, _seq bigint, _op text, _committed timestamptz, updated_at timestamptz,
             customer_segment text, email text, first_name text, last_name text, _unavailable text[]${ex.map(([c, t]) => `, "${c}" ${t}`).join('')})
        LEFT JOIN ${stg}.stg_customers s ON s.customer_id = r.customer_id
        -- A re-applied change (rewind, redelivery) with unchanged TOASTed values keeps the row it
        -- wrote the first time: staging has moved on since, and would fill in later values.
        WHERE cardinality(r._unavailable) = 0
           OR NOT EXISTS (SELECT 1 FROM ${stg}.customer_changes c WHERE c.customer_id = r.customer_id AND c.lsn = r._lsn)
      ) x
      ON CONFLICT (customer_id, lsn) DO UPDATE SET seq = EXCLUDED.seq, op = EXCLUDED.op, updated_at = EXCLUDED.updated_at, committed_at = EXCLUDED.committed_at,
        customer_segment = EXCLUDED.customer_segment, email_normalized = EXCLUDED.email_normalized, full_name = EXCLUDED.full_name${names.map((c) => `, ${c} = EXCLUDED.${c}`).join('')}`,
      [JSON.stringify([...customers.values()])]);
  }
  if (orders.size > 0) {
    const ex = extras.get('orders') ?? [];
    const names = ex.map(([c]) => `"${c}"`);
    await client.query(`
      INSERT INTO ${stg}.order_status_changes (order_id, lsn, seq, op, status, updated_at, committed_at, order_date, customer_id${names.map((c) => `, ${c}`).join('')})
      SELECT r.order_id, r._lsn, r._seq, r._op, r.status, r.updated_at, r._committed, r.order_date, r.customer_id${names.map((c) => `, r.${c}`).join('')}
      FROM jsonb_to_recordset($1::jsonb) AS r(order_id bigint, _lsn bigint, _seq bigint, _op text, status text, updated_at timestamptz,
           _committed timestamptz, order_date timestamptz, customer_id bigint${ex.map(([c, t]) => `, "${c}" ${t}`).join('')})
      ON CONFLICT (order_id, lsn) DO UPDATE SET seq = EXCLUDED.seq, op = EXCLUDED.op, status = EXCLUDED.status, updated_at = EXCLUDED.updated_at,
        committed_at = EXCLUDED.committed_at, order_date = EXCLUDED.order_date, customer_id = EXCLUDED.customer_id${names.map((c) => `, ${c} = EXCLUDED.${c}`).join('')}`,
      [JSON.stringify([...orders.values()])]);
  }
}

/** Applies a run of non-truncate changes (stream order) to history and staging. */
export async function applyStaging(client: pg.ClientBase, schemas: WarehouseSchemas, changes: RowChange[]): Promise<void> {
  const { stg } = quoted(schemas);
  const extras = await ensureExtraColumns(client, stg, changes);
  // History first: it resolves unavailable values against staging as it was before this batch.
  await appendHistory(client, stg, changes, extras);
  const lastPerKey = new Map<TableName, Map<string, RowChange>>();
  for (const ch of changes) {
    if (ch.op === 't') throw new Error('truncates must be expanded before applyStaging');
    const img = ch.op === 'd' ? ch.before! : ch.after!;
    const perTable = lastPerKey.get(ch.table) ?? new Map<string, RowChange>();
    const key = rowKey(TABLES[ch.table], img);
    const prev = perTable.get(key);
    // Stream order is commit order per key, except for a change sent again
    // after a capture restart: the later change in commit order wins.
    if (!prev || compareOrder(ch, prev) >= 0) perTable.set(key, ch);
    lastPerKey.set(ch.table, perTable);
  }
  for (const [table, perKey] of lastPerKey) {
    const spec = TABLES[table];
    const ups = [...perKey.values()].filter((c) => c.op !== 'd');
    const dels = [...perKey.values()].filter((c) => c.op === 'd');
    if (dels.length > 0) {
      await client.query(deleteSql(stg, spec), [JSON.stringify(dels.map((c) => ({ ...Object.fromEntries(spec.key.map((k) => [k, c.before![k]])), _seq: c.seq.toString(), _lsn: c.lsn.toString() })))]);
    }
    if (ups.length > 0) {
      const ex = extras.get(table) ?? [];
      // A change written before a column existed does not carry it: staging keeps what it holds (like an unchanged TOASTed value).
      const rows = ex.length === 0 ? ups.map((c) => jsonRow(c, c.after!))
        : ups.map((c) => ({ ...jsonRow(c, c.after!), _unavailable: [...c.unavailable, ...ex.filter(([n]) => !c.extraColumns || !(n in c.extraColumns)).map(([n]) => n)] }));
      await client.query(upsertSql(stg, spec, ex), [JSON.stringify(rows)]);
    }
  }
}

/** Columns staging and history hold for themselves: a source column of the same name is not followed (docs/consumers.md). */
const RESERVED = new Set(['_source_lsn', '_source_seq', '_ingested_at', 'email_normalized', 'full_name', 'lsn', 'seq', 'op', 'committed_at']);

const HISTORY: Partial<Record<TableName, string>> = { customers: 'customer_changes', orders: 'order_status_changes' };

/**
 * Schema changes followed to staging: a source column the warehouse does
 * not model (added after it was built) is added to stg_<table>, and to the
 * table's history, with the type its Avro field maps to, in the batch's
 * transaction, before the rows that carry it. A column that already exists
 * keeps its type (values are cast to it); one the source dropped stays
 * as it is. Returns, per table, the extra columns this run writes.
 */
async function ensureExtraColumns(client: pg.ClientBase, stg: string, changes: readonly RowChange[]): Promise<Map<TableName, ExtraColumns>> {
  const wanted = new Map<TableName, Map<string, string>>();
  for (const ch of changes) {
    if (!ch.extraColumns) continue;
    const m = wanted.get(ch.table) ?? new Map<string, string>();
    for (const [c, t] of Object.entries(ch.extraColumns)) if (!RESERVED.has(c)) m.set(c, t);
    wanted.set(ch.table, m);
  }
  const out = new Map<TableName, ExtraColumns>();
  for (const [table, cols] of wanted) {
    if (cols.size === 0) continue;
    const typed = new Map(cols);
    for (const target of [`stg_${table}`, HISTORY[table]].filter((x): x is string => x !== undefined)) {
      const { rows } = await client.query<{ attname: string; type: string }>(
        `SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`,
        [`${stg}.${target}`]);
      const have = new Map(rows.map((r) => [r.attname, r.type]));
      // Staging's type wins over a retyped source column: the values are read as it.
      if (target.startsWith('stg_')) for (const [c] of cols) if (have.has(c)) typed.set(c, have.get(c)!);
      const missing = [...typed].filter(([c]) => !have.has(c));
      if (missing.length > 0) {
        await client.query(`ALTER TABLE ${stg}.${target} ${missing.map(([c, t]) => `ADD COLUMN IF NOT EXISTS "${c}" ${t}`).join(', ')}`);
      }
    }
    out.set(table, [...typed].map(([c, t]) => [c, t] as const));
  }
  return out;
}
