import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { CompatibilityLevel } from './compatibility.ts';
import { restErrors } from './errors.ts';

/**
 * Durable registry state in Postgres. Every write runs in a transaction that
 * first takes one advisory lock per registry schema, so several registry
 * processes on the same store behave like one: the same schema registered
 * concurrently gets one global id and one version.
 */

export interface SubjectVersion {
  subject: string;
  version: number;
  id: number;
  schema: string;
  schemaType: string;
  deleted: boolean;
}

export interface SchemaInput {
  schema: string;
  schemaType: string;
  canonical: string;
  fingerprint: string;
}

export type RegisterOutcome =
  | { kind: 'existing' | 'created'; id: number; version: number }
  | { kind: 'incompatible'; messages: string[] };

/** Decides, under the registration lock, whether the candidate fits the subject's live versions. */
export type CompatibilityCheck = (live: SubjectVersion[], level: CompatibilityLevel) => string[];

type Queryable = pg.Pool | pg.PoolClient;

const GLOBAL = ''; // config row for the global level; a subject is never empty (it is a path segment)

export class RegistryStore {
  private readonly s: string;
  private readonly lockKey: string;

  constructor(
    private readonly pool: pg.Pool,
    schemaName: string,
    private readonly defaultLevel: CompatibilityLevel,
  ) {
    this.s = `"${schemaName}"`;
    // A stable signed 64-bit key per registry schema, so tests on other schemas never contend.
    this.lockKey = BigInt.asIntN(64, BigInt(`0x${createHash('sha256').update(`schema-registry:${schemaName}`).digest('hex').slice(0, 16)}`)).toString();
  }

  /** Creates tables if missing. Serialised by the same lock, as concurrent CREATE IF NOT EXISTS can still collide. */
  async migrate(): Promise<void> {
    await this.tx(async (c) => {
      await c.query(`CREATE SCHEMA IF NOT EXISTS ${this.s}`);
      // integer: Confluent's wire format carries the id in 4 bytes.
      await c.query(`CREATE SEQUENCE IF NOT EXISTS ${this.s}.schema_id_seq AS integer START 1`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${this.s}.schemas (
        id integer PRIMARY KEY,
        schema_type text NOT NULL,
        schema text NOT NULL,
        canonical text NOT NULL,
        fingerprint text NOT NULL UNIQUE,
        created_at timestamptz NOT NULL DEFAULT now())`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${this.s}.subject_versions (
        subject text NOT NULL,
        version integer NOT NULL,
        schema_id integer NOT NULL REFERENCES ${this.s}.schemas (id),
        deleted boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (subject, version))`);
      await c.query(`CREATE INDEX IF NOT EXISTS subject_versions_schema_id ON ${this.s}.subject_versions (schema_id)`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${this.s}.config (
        subject text PRIMARY KEY,
        compatibility text NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now())`);
    });
  }

  async ping(): Promise<void> {
    await this.pool.query('SELECT 1');
  }

  async register(subject: string, input: SchemaInput, check: CompatibilityCheck): Promise<RegisterOutcome> {
    return this.tx(async (c) => {
      const live = await this.versionsOf(c, subject, false);
      const same = await c.query<{ id: number }>(`SELECT id FROM ${this.s}.schemas WHERE fingerprint = $1`, [input.fingerprint]);
      const sameId = same.rows[0]?.id;
      const existing = live.find((v) => v.id === sameId);
      if (existing) return { kind: 'existing', id: existing.id, version: existing.version };

      const messages = check(live, await this.effectiveLevel(c, subject));
      if (messages.length > 0) return { kind: 'incompatible', messages };

      let id = sameId;
      if (id === undefined) {
        const ins = await c.query<{ id: number }>(
          `INSERT INTO ${this.s}.schemas (id, schema_type, schema, canonical, fingerprint)
           VALUES (nextval('${this.s}.schema_id_seq'), $1, $2, $3, $4) RETURNING id`,
          [input.schemaType, input.schema, input.canonical, input.fingerprint],
        );
        id = ins.rows[0]!.id;
      }
      // Soft-deleted versions keep their numbers; only a hard delete frees them.
      const next = await c.query<{ v: number }>(
        `SELECT COALESCE(MAX(version), 0) + 1 AS v FROM ${this.s}.subject_versions WHERE subject = $1`,
        [subject],
      );
      const version = next.rows[0]!.v;
      await c.query(`INSERT INTO ${this.s}.subject_versions (subject, version, schema_id) VALUES ($1, $2, $3)`, [subject, version, id]);
      return { kind: 'created', id, version };
    });
  }

  async subjects(includeDeleted: boolean, prefix = ''): Promise<string[]> {
    const r = await this.pool.query<{ subject: string }>(
      `SELECT DISTINCT subject FROM ${this.s}.subject_versions
       WHERE ($1 OR NOT deleted) AND starts_with(subject, $2) ORDER BY subject`,
      [includeDeleted, prefix],
    );
    return r.rows.map((row) => row.subject);
  }

  /** Subjects every remaining version of which is soft-deleted (Confluent's `deletedOnly`). */
  async deletedSubjects(prefix = ''): Promise<string[]> {
    const r = await this.pool.query<{ subject: string }>(
      `SELECT subject FROM ${this.s}.subject_versions WHERE starts_with(subject, $1)
       GROUP BY subject HAVING bool_and(deleted) ORDER BY subject`,
      [prefix],
    );
    return r.rows.map((row) => row.subject);
  }

  /** GET /schemas: subject-versions by subject then version; `latestOnly` keeps each subject's highest one. */
  async allVersions(prefix: string, includeDeleted: boolean, latestOnly: boolean): Promise<SubjectVersion[]> {
    const r = await this.pool.query(
      `SELECT * FROM (${this.versionSelect()} WHERE starts_with(sv.subject, $1) AND ($2 OR NOT sv.deleted)) v
       WHERE NOT $3 OR v.version = (SELECT max(x.version) FROM ${this.s}.subject_versions x WHERE x.subject = v.subject AND ($2 OR NOT x.deleted))
       ORDER BY v.subject, v.version`,
      [prefix, includeDeleted, latestOnly],
    );
    return r.rows.map(toVersion);
  }

  async subjectsOfId(id: number, includeDeleted: boolean, subject?: string): Promise<string[]> {
    const r = await this.pool.query<{ subject: string }>(
      `SELECT DISTINCT subject FROM ${this.s}.subject_versions
       WHERE schema_id = $1 AND ($2 OR NOT deleted) AND ($3::text IS NULL OR subject = $3) ORDER BY subject`,
      [id, includeDeleted, subject ?? null],
    );
    return r.rows.map((row) => row.subject);
  }

  async hasSubject(subject: string, includeDeleted: boolean): Promise<boolean> {
    const r = await this.pool.query(
      `SELECT 1 FROM ${this.s}.subject_versions WHERE subject = $1 AND ($2 OR NOT deleted) LIMIT 1`,
      [subject, includeDeleted],
    );
    return r.rowCount !== 0;
  }

  versions(subject: string, includeDeleted: boolean): Promise<SubjectVersion[]> {
    return this.versionsOf(this.pool, subject, includeDeleted);
  }

  /** `version` -1 means the latest. */
  async version(subject: string, version: number, includeDeleted: boolean): Promise<SubjectVersion | undefined> {
    const all = await this.versionsOf(this.pool, subject, includeDeleted);
    return version === -1 ? all.at(-1) : all.find((v) => v.version === version);
  }

  async lookup(subject: string, fingerprint: string, includeDeleted: boolean): Promise<SubjectVersion | undefined> {
    const r = await this.pool.query(
      `${this.versionSelect()} WHERE sv.subject = $1 AND s.fingerprint = $2 AND ($3 OR NOT sv.deleted)
       ORDER BY sv.deleted, sv.version DESC LIMIT 1`,
      [subject, fingerprint, includeDeleted],
    );
    return r.rows.map(toVersion)[0];
  }

  /** A schema is served by id while any version (even soft-deleted) refers to it, as in Confluent. */
  async schemaById(id: number): Promise<{ schema: string; schemaType: string } | undefined> {
    const r = await this.pool.query<{ schema: string; schema_type: string }>(
      `SELECT s.schema, s.schema_type FROM ${this.s}.schemas s
       WHERE s.id = $1 AND EXISTS (SELECT 1 FROM ${this.s}.subject_versions sv WHERE sv.schema_id = s.id)`,
      [id],
    );
    const row = r.rows[0];
    return row && { schema: row.schema, schemaType: row.schema_type };
  }

  async versionsOfId(id: number, includeDeleted: boolean, subject?: string): Promise<{ subject: string; version: number }[]> {
    const r = await this.pool.query<{ subject: string; version: number }>(
      `SELECT subject, version FROM ${this.s}.subject_versions
       WHERE schema_id = $1 AND ($2 OR NOT deleted) AND ($3::text IS NULL OR subject = $3) ORDER BY subject, version`,
      [id, includeDeleted, subject ?? null],
    );
    return r.rows;
  }

  /** DELETE /subjects/{s}: soft by default; permanent only once every version is soft-deleted. */
  async deleteSubject(subject: string, permanent: boolean): Promise<number[]> {
    return this.tx(async (c) => {
      const all = await this.versionsOf(c, subject, true);
      if (all.length === 0) throw restErrors.subjectNotFound(subject);
      const live = all.filter((v) => !v.deleted);
      if (permanent) {
        if (live.length > 0) throw restErrors.subjectNotSoftDeleted(subject);
        await c.query(`DELETE FROM ${this.s}.subject_versions WHERE subject = $1`, [subject]);
        await c.query(`DELETE FROM ${this.s}.config WHERE subject = $1`, [subject]);
        return all.map((v) => v.version);
      }
      if (live.length === 0) throw restErrors.subjectSoftDeleted(subject);
      await c.query(`UPDATE ${this.s}.subject_versions SET deleted = true WHERE subject = $1 AND NOT deleted`, [subject]);
      // Confluent drops the subject's config once it has no live versions.
      await c.query(`DELETE FROM ${this.s}.config WHERE subject = $1`, [subject]);
      return live.map((v) => v.version);
    });
  }

  /** DELETE /subjects/{s}/versions/{v}; `version` -1 is the latest (live one for soft, any for permanent). */
  async deleteVersion(subject: string, version: number, permanent: boolean): Promise<number> {
    return this.tx(async (c) => {
      const all = await this.versionsOf(c, subject, true);
      if (all.length === 0) throw restErrors.subjectNotFound(subject);
      const live = all.filter((v) => !v.deleted);
      const target = version === -1 ? (permanent ? all.at(-1) : (live.at(-1) ?? all.at(-1))) : all.find((v) => v.version === version);
      if (!target) throw restErrors.versionNotFound(version);
      if (permanent) {
        if (!target.deleted) throw restErrors.versionNotSoftDeleted(subject, target.version);
        await c.query(`DELETE FROM ${this.s}.subject_versions WHERE subject = $1 AND version = $2`, [subject, target.version]);
        return target.version;
      }
      if (target.deleted) throw restErrors.versionSoftDeleted(subject, target.version);
      await c.query(`UPDATE ${this.s}.subject_versions SET deleted = true WHERE subject = $1 AND version = $2`, [subject, target.version]);
      if (live.length === 1) await c.query(`DELETE FROM ${this.s}.config WHERE subject = $1`, [subject]);
      return target.version;
    });
  }

  /** The level a registration under `subject` is checked with: subject, else global, else the server default. */
  effectiveLevel(c: Queryable, subject: string): Promise<CompatibilityLevel> {
    return this.levelOf(c, subject, true) as Promise<CompatibilityLevel>;
  }

  globalLevel(): Promise<CompatibilityLevel> {
    return this.levelOf(this.pool, GLOBAL, true) as Promise<CompatibilityLevel>;
  }

  subjectLevel(subject: string, defaultToGlobal: boolean): Promise<CompatibilityLevel | undefined> {
    return this.levelOf(this.pool, subject, defaultToGlobal);
  }

  async setLevel(subject: string | undefined, level: CompatibilityLevel): Promise<void> {
    await this.tx((c) =>
      c.query(
        `INSERT INTO ${this.s}.config (subject, compatibility) VALUES ($1, $2)
         ON CONFLICT (subject) DO UPDATE SET compatibility = EXCLUDED.compatibility, updated_at = now()`,
        [subject ?? GLOBAL, level],
      ),
    );
  }

  /** Removes a subject's (or, with undefined, the global) level and returns what it was. */
  async deleteLevel(subject: string | undefined): Promise<CompatibilityLevel | undefined> {
    return this.tx(async (c) => {
      const r = await c.query<{ compatibility: CompatibilityLevel }>(
        `DELETE FROM ${this.s}.config WHERE subject = $1 RETURNING compatibility`,
        [subject ?? GLOBAL],
      );
      return r.rows[0]?.compatibility;
    });
  }

  private async levelOf(c: Queryable, subject: string, fallBack: boolean): Promise<CompatibilityLevel | undefined> {
    const r = await c.query<{ subject: string; compatibility: CompatibilityLevel }>(
      `SELECT subject, compatibility FROM ${this.s}.config WHERE subject = $1 OR ($2 AND subject = '')`,
      [subject, fallBack],
    );
    const own = r.rows.find((row) => row.subject === subject)?.compatibility;
    if (own || !fallBack) return own;
    return r.rows.find((row) => row.subject === GLOBAL)?.compatibility ?? this.defaultLevel;
  }

  private async versionsOf(c: Queryable, subject: string, includeDeleted: boolean): Promise<SubjectVersion[]> {
    const r = await c.query(`${this.versionSelect()} WHERE sv.subject = $1 AND ($2 OR NOT sv.deleted) ORDER BY sv.version`, [
      subject,
      includeDeleted,
    ]);
    return r.rows.map(toVersion);
  }

  private versionSelect(): string {
    return `SELECT sv.subject, sv.version, sv.schema_id AS id, s.schema, s.schema_type, sv.deleted
            FROM ${this.s}.subject_versions sv JOIN ${this.s}.schemas s ON s.id = sv.schema_id`;
  }

  private async tx<T>(work: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await c.query('BEGIN');
      await c.query('SELECT pg_advisory_xact_lock($1::bigint)', [this.lockKey]);
      const result = await work(c);
      await c.query('COMMIT');
      return result;
    } catch (err) {
      // If even ROLLBACK fails the connection is unusable: drop it instead of pooling it.
      await c.query('ROLLBACK').catch((e: Error) => (broken = e));
      throw err;
    } finally {
      c.release(broken);
    }
  }
}

function toVersion(row: { subject: string; version: number; id: number; schema: string; schema_type: string; deleted: boolean }): SubjectVersion {
  return { subject: row.subject, version: row.version, id: row.id, schema: row.schema, schemaType: row.schema_type, deleted: row.deleted };
}
