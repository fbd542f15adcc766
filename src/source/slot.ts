import type pg from 'pg';
import { SourceNotReadyError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { parseLsn, type Lsn } from './lsn.ts';
import { sleep } from '../util/sleep.ts';
import { formatLsn } from './lsn.ts';
import { ReplicationConnection } from './replication-connection.ts';

/**
 * Preconditions, publication and slot management. Problems a user must fix
 * (wal_level, missing REPLICATION, a slot with another plugin, a publication
 * that does not cover the configured tables) raise SourceNotReadyError with
 * a message that says what to do.
 */
const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

export function checkIdent(kind: string, name: string): string {
  if (!IDENT.test(name)) throw new SourceNotReadyError(`${kind} name "${name}" must be a plain lower-case identifier`);
  return name;
}

export async function checkSource(pool: pg.Pool): Promise<void> {
  const { rows } = await pool.query<{ wal_level: string; can_replicate: boolean; max_slots: string }>(
    `SELECT current_setting('wal_level') AS wal_level,
            (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user) AS can_replicate,
            current_setting('max_replication_slots') AS max_slots`);
  const r = rows[0]!;
  if (r.wal_level !== 'logical') {
    throw new SourceNotReadyError(`source wal_level is "${r.wal_level}"; logical replication needs wal_level=logical (ALTER SYSTEM SET wal_level = logical; then restart Postgres)`);
  }
  if (!r.can_replicate) {
    throw new SourceNotReadyError('the source role lacks the REPLICATION attribute (ALTER ROLE <user> WITH REPLICATION)');
  }
  if (Number(r.max_slots) < 1) throw new SourceNotReadyError('max_replication_slots is 0 on the source');
}

/** Tables of the configured schemas that have a primary key, as schema.table. */
export async function tablesInSchemas(pool: pg.Pool, schemas: string[]): Promise<string[]> {
  const { rows } = await pool.query<{ t: string }>(
    `SELECT n.nspname || '.' || c.relname AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r','p') AND n.nspname = ANY($1) ORDER BY 1`, [schemas]);
  return rows.map((r) => r.t);
}

/**
 * Creates the publication for `tables` if it is missing; if it exists, checks
 * that it publishes every configured table and every operation. An existing
 * publication is never altered: it may be shared with other subscribers.
 */
export async function ensurePublication(pool: pg.Pool, name: string, tables: string[], log: Logger): Promise<void> {
  checkIdent('publication', name);
  const pub = await pool.query<{ pubinsert: boolean; pubupdate: boolean; pubdelete: boolean; pubtruncate: boolean; puballtables: boolean }>(
    'SELECT pubinsert, pubupdate, pubdelete, pubtruncate, puballtables FROM pg_publication WHERE pubname = $1', [name]);
  if (pub.rows.length === 0) {
    if (tables.length === 0) throw new SourceNotReadyError(`publication ${name} is missing and there are no tables to publish`);
    const list = tables.map((t) => t.split('.').map((p) => `"${p}"`).join('.')).join(', ');
    await pool.query(`CREATE PUBLICATION "${name}" FOR TABLE ${list}`);
    log.info({ publication: name, tables }, 'publication created');
    return;
  }
  const p = pub.rows[0]!;
  const missingOps = (['insert', 'update', 'delete', 'truncate'] as const).filter((op) => !p[`pub${op}`]);
  if (missingOps.length > 0) throw new SourceNotReadyError(`publication ${name} does not publish ${missingOps.join(', ')}; recreate it or name another with CAPTURE_PUBLICATION`);
  const { rows } = await pool.query<{ t: string }>("SELECT schemaname || '.' || tablename AS t FROM pg_publication_tables WHERE pubname = $1", [name]);
  const published = new Set(rows.map((r) => r.t));
  const missing = tables.filter((t) => !published.has(t));
  if (missing.length > 0) throw new SourceNotReadyError(`publication ${name} exists but does not include ${missing.join(', ')}; ALTER PUBLICATION ${name} ADD TABLE ... or configure CAPTURE_TABLES to match`);
}

export interface SlotInfo {
  exists: boolean;
  confirmedFlush: Lsn | null;
  activePid: number | null;
}

export async function inspectSlot(pool: pg.Pool, slot: string): Promise<SlotInfo> {
  checkIdent('slot', slot);
  const { rows } = await pool.query<{ plugin: string; slot_type: string; database: string; confirmed_flush_lsn: string | null; active_pid: number | null }>(
    'SELECT plugin, slot_type, database, confirmed_flush_lsn::text, active_pid FROM pg_replication_slots WHERE slot_name = $1', [slot]);
  if (rows.length === 0) return { exists: false, confirmedFlush: null, activePid: null };
  const r = rows[0]!;
  const { rows: db } = await pool.query<{ d: string }>('SELECT current_database() AS d');
  if (r.slot_type !== 'logical' || r.plugin !== 'pgoutput') throw new SourceNotReadyError(`slot ${slot} exists with plugin ${r.plugin} (${r.slot_type}); the capture needs a logical pgoutput slot — drop it or set CAPTURE_SLOT`);
  if (r.database !== db[0]!.d) throw new SourceNotReadyError(`slot ${slot} belongs to database ${r.database}, not ${db[0]!.d}`);
  return { exists: true, confirmedFlush: r.confirmed_flush_lsn ? parseLsn(r.confirmed_flush_lsn) : null, activePid: r.active_pid };
}

export interface CreatedSlot {
  consistentPoint: Lsn;
  snapshotName: string | null;
}

/**
 * Creates the slot over the replication connection. With `exportSnapshot`
 * the returned snapshot stays importable (SET TRANSACTION SNAPSHOT) until the
 * next command on that connection: the rows it shows are exactly those
 * committed before the slot's consistent point.
 */
export async function createSlot(repl: ReplicationConnection, slot: string, exportSnapshot: boolean): Promise<CreatedSlot> {
  checkIdent('slot', slot);
  const rows = await repl.command<{ consistent_point: string; snapshot_name: string | null }>(
    `CREATE_REPLICATION_SLOT "${slot}" LOGICAL pgoutput ${exportSnapshot ? 'EXPORT_SNAPSHOT' : 'NOEXPORT_SNAPSHOT'}`);
  const r = rows[0]!;
  return { consistentPoint: parseLsn(r.consistent_point), snapshotName: r.snapshot_name };
}

export async function dropSlot(pool: pg.Pool, slot: string): Promise<void> {
  await pool.query('SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1', [slot]);
}

/**
 * Snapshot bookkeeping in the source's meta schema: a slot whose initial
 * snapshot never finished must not be streamed from as if it had (that would
 * leave the rows not yet read missing forever), so it is recreated instead.
 */
export class SnapshotLedger {
  constructor(private readonly pool: pg.Pool, private readonly metaSchema: string) {
    checkIdent('meta schema', metaSchema);
  }

  async init(): Promise<void> {
    await ensureSchema(this.pool, this.metaSchema);
    await this.pool.query(`CREATE TABLE IF NOT EXISTS "${this.metaSchema}".capture_snapshots (
      slot_name text PRIMARY KEY, consistent_point pg_lsn NOT NULL,
      started_at timestamptz NOT NULL DEFAULT now(), completed_at timestamptz)`);
  }

  async state(slot: string): Promise<'none' | 'incomplete' | 'complete'> {
    const { rows } = await this.pool.query<{ done: boolean }>(`SELECT completed_at IS NOT NULL AS done FROM "${this.metaSchema}".capture_snapshots WHERE slot_name = $1`, [slot]);
    if (rows.length === 0) return 'none';
    return rows[0]!.done ? 'complete' : 'incomplete';
  }

  async started(slot: string, at: Lsn): Promise<void> {
    await this.pool.query(
      `INSERT INTO "${this.metaSchema}".capture_snapshots (slot_name, consistent_point) VALUES ($1, $2::text::pg_lsn)
       ON CONFLICT (slot_name) DO UPDATE SET consistent_point = EXCLUDED.consistent_point, started_at = now(), completed_at = NULL`,
      [slot, `${(at >> 32n).toString(16)}/${(at & 0xffffffffn).toString(16)}`]);
  }

  async completed(slot: string): Promise<void> {
    await this.pool.query(`UPDATE "${this.metaSchema}".capture_snapshots SET completed_at = now() WHERE slot_name = $1`, [slot]);
  }

  async forget(slot: string): Promise<void> {
    await this.pool.query(`DELETE FROM "${this.metaSchema}".capture_snapshots WHERE slot_name = $1`, [slot]);
  }
}

/**
 * CREATE SCHEMA IF NOT EXISTS asks for CREATE on the database even when the
 * schema exists, so a least-privilege role whose schema an administrator
 * made beforehand would be refused: create it only when it is missing.
 */
export async function ensureSchema(db: Pick<pg.Pool, 'query'> | Pick<pg.ClientBase, 'query'>, schema: string): Promise<void> {
  const { rows } = await db.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
  if (rows.length === 0) await db.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
}

export interface OpenSlotOptions {
  pool: pg.Pool;
  cfg: { slot: string; snapshotMode: 'initial' | 'never' | 'always'; metaSchema: string; sourceUrl: string; slotBusyTimeoutMs: number };
  signal: AbortSignal;
  log: Logger;
  /** Reads the initial snapshot (exported as `snapshotName`) and returns once it is all in Kafka. */
  snapshot(snapshotName: string | null, consistentPoint: Lsn): Promise<void>;
}

/**
 * Opens the replication connection on a usable slot and says where
 * streaming starts: the slot's confirmed LSN when it exists (and its initial
 * snapshot, if any, completed), else a new slot's consistent point after the
 * snapshot the mode asks for.
 */
export async function openSlot(o: OpenSlotOptions): Promise<{ repl: ReplicationConnection; startLsn: Lsn }> {
  const { slot, snapshotMode } = o.cfg;
  const ledger = new SnapshotLedger(o.pool, o.cfg.metaSchema);
  await ledger.init();
  let info = await inspectSlot(o.pool, slot);
  // After a crash the old walsender may hold the slot until it notices its client is gone.
  const deadline = Date.now() + o.cfg.slotBusyTimeoutMs;
  while (info.exists && info.activePid !== null) {
    if (Date.now() > deadline || o.signal.aborted) throw new SourceNotReadyError(`slot ${slot} is in use by backend ${info.activePid}; is another capture running?`);
    await sleep(500, o.signal);
    info = await inspectSlot(o.pool, slot);
  }
  const snapshotState = await ledger.state(slot);
  if (info.exists && (snapshotMode === 'always' || (snapshotMode === 'initial' && snapshotState === 'incomplete'))) {
    o.log.warn({ slot, snapshotMode, snapshotState }, 'dropping slot to take a new snapshot');
    await dropSlot(o.pool, slot);
    info = { exists: false, confirmedFlush: null, activePid: null };
  }
  const repl = new ReplicationConnection(o.cfg.sourceUrl, o.log);
  await repl.connect();
  if (info.exists) return { repl, startLsn: info.confirmedFlush ?? 0n };
  try {
    return { repl, startLsn: await createAndSnapshot(o, repl, ledger) };
  } catch (err) {
    await repl.close();
    throw err;
  }
}

async function createAndSnapshot(o: OpenSlotOptions, repl: ReplicationConnection, ledger: SnapshotLedger): Promise<Lsn> {
  const { slot, snapshotMode } = o.cfg;
  const wantSnapshot = snapshotMode !== 'never';
  const created = await createSlot(repl, slot, wantSnapshot);
  o.log.info({ slot, consistentPoint: formatLsn(created.consistentPoint) }, 'slot created');
  if (!wantSnapshot) {
    await ledger.forget(slot);
    return created.consistentPoint;
  }
  await ledger.started(slot, created.consistentPoint);
  await o.snapshot(created.snapshotName, created.consistentPoint);
  await ledger.completed(slot);
  return created.consistentPoint;
}
