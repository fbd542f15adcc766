import type pg from 'pg';
import { SourceNotReadyError } from '../errors.ts';
import type { Column, Relation } from './change-event.ts';
import { columnType } from './pg-values.ts';

/**
 * What pgoutput does not say about a table: its primary key (with REPLICA
 * IDENTITY FULL pgoutput flags *every* column as identity) and which columns
 * are NOT NULL (Debezium makes those Avro fields non-optional).
 */
export interface TableDescription {
  oid: number;
  schema: string;
  table: string;
  replicaIdentity: Relation['replicaIdentity'];
  columns: (Column & { notNull: boolean })[];
  keyNames: string[];
}

type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.Client, 'query'>;

export async function describeTable(db: Queryable, schema: string, table: string): Promise<TableDescription | null> {
  const { rows } = await db.query<{ oid: number; relreplident: string; attname: string; atttypid: number; atttypmod: number; attnotnull: boolean; iskey: boolean }>(
    `SELECT c.oid::int AS oid, c.relreplident::text AS relreplident, a.attname, a.atttypid::int AS atttypid, a.atttypmod, a.attnotnull,
            coalesce(a.attnum = ANY (i.indkey), false) AS iskey
       FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
       LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
      WHERE n.nspname = $1 AND c.relname = $2
      ORDER BY a.attnum`, [schema, table]);
  if (rows.length === 0) return null;
  const columns = rows.map((r) => ({
    name: r.attname, typeOid: r.atttypid, typeMod: r.atttypmod, isKey: r.iskey, notNull: r.attnotnull, type: columnType(r.atttypid, r.atttypmod),
  }));
  return {
    oid: rows[0]!.oid, schema, table, replicaIdentity: rows[0]!.relreplident as Relation['replicaIdentity'],
    columns, keyNames: columns.filter((c) => c.isKey).map((c) => c.name),
  };
}

/**
 * Sets the relation's key columns to the table's primary key (in place: the
 * decoder keeps using the same Relation object). A table without one cannot
 * be keyed, which SPEC §2 requires.
 */
export function applyPrimaryKey(relation: Relation, desc: TableDescription | null): void {
  const keys = desc?.keyNames ?? [];
  if (keys.length === 0) {
    throw new SourceNotReadyError(`table ${relation.schema}.${relation.table} has no primary key; every captured table needs one to key its topic`);
  }
  relation.columns.forEach((c) => { c.isKey = keys.includes(c.name); });
  relation.keyIndexes = relation.columns.flatMap((c, i) => (c.isKey ? [i] : []));
  if (relation.keyIndexes.length !== keys.length) {
    throw new SourceNotReadyError(`table ${relation.schema}.${relation.table}: primary key columns ${keys.join(', ')} are not all in the replicated columns`);
  }
}
