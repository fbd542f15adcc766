import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { MigrationError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { WarehouseSchemas } from '../sinks/postgres/pool.ts';

/**
 * A small SQL migration runner. Migrations are files `NNNN_name.sql` under
 * `migrations/<set>/`, applied in order, once each, recorded in
 * `cdc_meta.schema_migrations`. SQL may name its target schemas through
 * placeholders (`{{source_schema}}`, `{{staging_schema}}`,
 * `{{analytics_schema}}`, `{{meta_schema}}`, `{{publication}}`) so that the same files build the
 * default schemas and the per-test schemas integration tests isolate in.
 * Concurrent runners serialise on an advisory lock; each file applies in its
 * own transaction together with its ledger row, so a crash leaves either both
 * or neither.
 */
export type MigrationSet = 'source' | 'warehouse';

export interface SchemaNames {
  source_schema: string;
  staging_schema: string;
  analytics_schema: string;
  meta_schema: string;
  /** Not a schema, but named per test like one: the source's publication. */
  publication: string;
}

export const DEFAULT_SCHEMAS: SchemaNames = {
  source_schema: 'public',
  staging_schema: 'staging',
  analytics_schema: 'analytics',
  meta_schema: 'cdc_meta',
  publication: 'shop_cdc',
};

/** The placeholder names under which the warehouse set builds the given staging/analytics/meta schemas. */
export function warehouseSchemaNames(s: WarehouseSchemas): Pick<SchemaNames, 'staging_schema' | 'analytics_schema' | 'meta_schema'> {
  return { staging_schema: s.staging, analytics_schema: s.analytics, meta_schema: s.meta };
}

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'migrations');
const LOCK_KEY = 0x6364_6d69; // "cdmi"

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

export async function loadMigrations(set: MigrationSet, dir = join(ROOT, set)): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{4}_[\w-]+\.sql$/.test(f)).sort();
  const out: Migration[] = [];
  for (const file of files) {
    const sql = await readFile(join(dir, file), 'utf8');
    out.push({
      version: Number(file.slice(0, 4)),
      name: file.slice(5, -4),
      sql,
      checksum: createHash('sha256').update(sql).digest('hex').slice(0, 16),
    });
  }
  return out;
}

const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

export function renderSql(sql: string, names: SchemaNames): string {
  return sql.replace(/\{\{(\w+)\}\}/g, (m, key: string) => {
    const value = (names as unknown as Record<string, string | undefined>)[key];
    if (value === undefined) throw new MigrationError(`unknown placeholder ${m}`);
    if (!IDENT.test(value)) throw new MigrationError(`schema name "${value}" for ${m} is not a plain identifier`);
    return `"${value}"`;
  });
}

/** The ledger key: a set applied to one combination of schema names. */
function namespaceOf(set: MigrationSet, names: SchemaNames): string {
  return set === 'source' ? names.source_schema : `${names.staging_schema}/${names.analytics_schema}`;
}

export async function migrate(
  pool: pg.Pool,
  set: MigrationSet,
  opts: { schemas?: Partial<SchemaNames>; log?: Logger } = {},
): Promise<string[]> {
  const names = { ...DEFAULT_SCHEMAS, ...opts.schemas };
  const migrations = await loadMigrations(set);
  const ns = namespaceOf(set, names);
  const conn = await pool.connect();
  const applied: string[] = [];
  try {
    await conn.query('SELECT pg_advisory_lock($1)', [LOCK_KEY]);
    try {
      await conn.query(renderSql(
        `CREATE SCHEMA IF NOT EXISTS {{meta_schema}};
         CREATE TABLE IF NOT EXISTS {{meta_schema}}.schema_migrations (
           migration_set text NOT NULL, namespace text NOT NULL, version int NOT NULL,
           name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),
           PRIMARY KEY (migration_set, namespace, version))`, names));
      const { rows } = await conn.query<{ version: number; checksum: string; name: string }>(
        renderSql('SELECT version, checksum, name FROM {{meta_schema}}.schema_migrations WHERE migration_set = $1 AND namespace = $2', names),
        [set, ns],
      );
      const done = new Map(rows.map((r) => [r.version, r]));
      for (const m of migrations) {
        const prior = done.get(m.version);
        if (prior) {
          if (prior.checksum !== m.checksum) {
            throw new MigrationError(`migration ${set}/${m.version}_${m.name} changed after it was applied (checksum ${prior.checksum} -> ${m.checksum}); add a new migration instead`);
          }
          continue;
        }
        try {
          await conn.query('BEGIN');
          await conn.query(renderSql(m.sql, names));
          await conn.query(
            renderSql('INSERT INTO {{meta_schema}}.schema_migrations (migration_set, namespace, version, name, checksum) VALUES ($1,$2,$3,$4,$5)', names),
            [set, ns, m.version, m.name, m.checksum],
          );
          await conn.query('COMMIT');
        } catch (err) {
          await conn.query('ROLLBACK').catch(() => {});
          throw new MigrationError(`migration ${set}/${m.version}_${m.name} failed: ${(err as Error).message}`, { cause: err });
        }
        applied.push(`${m.version}_${m.name}`);
        opts.log?.info({ set, namespace: ns, migration: `${m.version}_${m.name}` }, 'migration applied');
      }
    } finally {
      await conn.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => {});
    }
  } finally {
    conn.release();
  }
  return applied;
}
