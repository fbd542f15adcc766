import type pg from 'pg';

/**
 * What the capture's role needs in the source database, checked up front so
 * that a least-privilege role (docs/security.md) missing a grant gets the SQL
 * an administrator runs, not a "permission denied" from the middle of a
 * snapshot. The least the capture needs:
 * - the REPLICATION attribute (a replication connection, a slot);
 * - USAGE on each published table's schema and SELECT on the table (the snapshot);
 * - the publication, made beforehand by an administrator; only a role owning
 *   every table may create it itself;
 * - its own meta schema (snapshot ledger), owned by it, or CREATE on the
 *   database to make it.
 */
export interface CaptureNeeds {
  tables: string[];
  publication: string;
  metaSchema: string;
}

export interface MissingPrivilege {
  what: string;
  /** The statement an administrator runs to grant it. */
  sql: string;
}

const q = (ident: string) => `"${ident.replace(/"/g, '""')}"`;
const qt = (t: string) => t.split('.').map(q).join('.');

export async function missingCapturePrivileges(db: Pick<pg.Pool, 'query'> | Pick<pg.ClientBase, 'query'>, needs: CaptureNeeds): Promise<MissingPrivilege[]> {
  const { rows: [me] } = await db.query<{ role: string; superuser: boolean; replication: boolean; db_create: boolean; db: string }>(
    `SELECT current_user AS role, rolsuper AS superuser, rolreplication AS replication,
            has_database_privilege(current_database(), 'CREATE') AS db_create, current_database() AS db
       FROM pg_roles WHERE rolname = current_user`);
  if (!me || me.superuser) return [];
  const role = q(me.role);
  const out: MissingPrivilege[] = [];
  if (!me.replication) out.push({ what: 'the REPLICATION attribute', sql: `ALTER ROLE ${role} WITH REPLICATION;` });
  const { rows: tables } = await db.query<{ t: string; schema: string; exists: boolean; usage: boolean; sel: boolean; owner: boolean }>(
    `SELECT t, split_part(t, '.', 1) AS schema, c.oid IS NOT NULL AS exists,
            COALESCE(has_schema_privilege(split_part(t, '.', 1), 'USAGE'), false) AS usage,
            CASE WHEN c.oid IS NULL THEN false ELSE has_table_privilege(c.oid, 'SELECT') END AS sel,
            CASE WHEN c.oid IS NULL THEN false ELSE pg_has_role(c.relowner, 'USAGE') END AS owner
       FROM unnest($1::text[]) AS t
       LEFT JOIN pg_namespace n ON n.nspname = split_part(t, '.', 1)
       LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = split_part(t, '.', 2)`, [needs.tables]);
  const schemasWithoutUsage = [...new Set(tables.filter((r) => r.exists && !r.usage).map((r) => r.schema))];
  for (const s of schemasWithoutUsage) out.push({ what: `USAGE on schema ${s}`, sql: `GRANT USAGE ON SCHEMA ${q(s)} TO ${role};` });
  const noSelect = tables.filter((r) => r.exists && !r.sel).map((r) => r.t);
  if (noSelect.length > 0) out.push({ what: `SELECT on ${noSelect.join(', ')}`, sql: `GRANT SELECT ON ${noSelect.map(qt).join(', ')} TO ${role};` });
  const { rows: pub } = await db.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [needs.publication]);
  if (pub.length === 0 && !(tables.length > 0 && tables.every((r) => r.owner) && me.db_create)) {
    out.push({ what: `the publication ${needs.publication}`, sql: `CREATE PUBLICATION ${q(needs.publication)} FOR TABLE ${needs.tables.map(qt).join(', ')};` });
  }
  const { rows: [meta] } = await db.query<{ exists: boolean; usage: boolean; create: boolean }>(
    `SELECT true AS exists, has_schema_privilege(oid, 'USAGE') AS usage, has_schema_privilege(oid, 'CREATE') AS create FROM pg_namespace WHERE nspname = $1`, [needs.metaSchema]);
  if (!meta && !me.db_create) out.push({ what: `its meta schema ${needs.metaSchema}`, sql: `CREATE SCHEMA ${q(needs.metaSchema)} AUTHORIZATION ${role};` });
  else if (meta && !(meta.usage && meta.create)) out.push({ what: `USAGE and CREATE on schema ${needs.metaSchema}`, sql: `GRANT USAGE, CREATE ON SCHEMA ${q(needs.metaSchema)} TO ${role};` });
  return out;
}

/** The message for a role that lacks something: what, and the SQL, on one line for logs and stderr. */
export function describeMissing(role: string, missing: MissingPrivilege[]): string {
  return `the source role ${role} lacks ${missing.map((m) => m.what).join('; ')}; an administrator must run: ${missing.map((m) => m.sql).join(' ')}`;
}

export async function currentRole(db: Pick<pg.Pool, 'query'> | Pick<pg.ClientBase, 'query'>): Promise<string> {
  const { rows } = await db.query<{ r: string }>('SELECT current_user AS r');
  return rows[0]!.r;
}
