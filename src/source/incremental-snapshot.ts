import { ensureSchema } from './slot.ts';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { SourceNotReadyError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { describeTable } from './catalog.ts';
import type { ChangeEvent, Relation, Row } from './change-event.ts';
import { ChunkWindow, chunkKey, chunkSnapshotFromText, EMPTY_CHUNK_SNAPSHOT, type ChunkRow } from './incremental-snapshot-window.ts';
import { formatLsn, type Lsn } from './lsn.ts';
import { valueParser } from './pg-values.ts';
import { RecentCommits } from './recent-commits.ts';
import { relationOf, snapshotClient } from './snapshot.ts';

/** Prefix of the watermark messages (transactional logical messages, content JSON {id, w: 'lw' | 'hw'}). */
export const WINDOW_PREFIX = 'shopstream.snapshot.window';

/**
 * On-demand re-snapshot of tables while streaming goes on: Debezium's
 * incremental snapshot (the DBLog watermark method). The table is read in
 * chunks in primary-key order; each chunk is read between a low and a high
 * watermark written to the WAL, and its rows go to Kafka at the high
 * watermark's place in the stream, minus the keys the stream changed inside
 * the window (ChunkWindow). Memory is one chunk plus the keys changed in one
 * window.
 *
 * Durability: the requests and their progress (last key of the last chunk
 * whose rows Kafka acknowledged) live in `<meta>.capture_incremental_snapshots`
 * in the source database, keyed by slot and table. A chunk's rows belong to
 * the high watermark's transaction for the acker, and the progress row is
 * written only once the slot may be confirmed past that transaction, i.e.
 * once every row of the chunk is in Kafka. A capture that dies at any point
 * resumes from the last recorded key: a chunk may be sent twice, none is
 * skipped. Watermarks of a dead process carry its run id and are ignored.
 */
export interface IncrementalSnapshotHost {
  /** Registers the table's schemas/topic before its rows are emitted. */
  prepare(relation: Relation): Promise<void>;
  /** Resolves once the slot may be confirmed at `lsn` (everything before it is in Kafka). */
  confirmed(lsn: Lsn, signal: AbortSignal): Promise<void>;
  /** Resolves when the publisher is below its high-water mark. */
  backpressure(): Promise<void>;
  progress(table: string, rowsDone: number, rowsEstimated: number): void;
  /** A failure the snapshot cannot get past: the capture stops, the restart resumes. */
  fail(err: Error): void;
}

export interface IncrementalSnapshotOptions {
  sourceUrl: string;
  metaSchema: string;
  slot: string;
  chunkSize: number;
  /** Tables the capture publishes; a request for another one is ignored with a warning. */
  tables: readonly string[];
  progressLogMs: number;
  /** Capacity of the recent-commits record (RECENT_COMMITS unless a test says otherwise). */
  recentCommits?: number;
}

interface Pending {
  table: string;
  signalLsn: string;
  lastKey: string[] | null;
  rowsDone: number;
}

export class IncrementalSnapshotter {
  private client: pg.Client | null = null;
  private readonly runId = randomUUID().slice(0, 8);
  private windowSeq = 0;
  private window: ChunkWindow | null = null;
  /** Set at HW, resolved at its commit with the transaction's end LSN. */
  private closing: { window: ChunkWindow; resolve: (endLsn: Lsn) => void } | null = null;
  private closed: ((endLsn: Lsn) => void) | null = null;
  /** The stream's recent commits, for the chunk snapshot check (ChunkWindow.close). */
  private readonly commits: RecentCommits;
  /** The transaction being streamed: its xid and commit LSN (BEGIN's final LSN). */
  private tx: { xid: number; commitLsn: Lsn } | null = null;
  private running: Promise<void> | null = null;
  private wakeAgain = false;
  private readonly abort = new AbortController();
  private readonly table: string;

  constructor(private readonly opts: IncrementalSnapshotOptions, private readonly host: IncrementalSnapshotHost, private readonly log: Logger) {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(opts.metaSchema)) throw new SourceNotReadyError(`bad meta schema name ${opts.metaSchema}`);
    this.table = `"${opts.metaSchema}".capture_incremental_snapshots`;
    // Recorded for every transaction, not only during a re-snapshot: the
    // transaction that makes the first chunk stale may commit before the
    // request, and a record is two typed-array writes.
    this.commits = new RecentCommits(opts.recentCommits);
  }

  /** Creates the progress table and resumes any unfinished re-snapshot of this slot. */
  async start(): Promise<void> {
    this.client = snapshotClient(this.opts.sourceUrl, 'shopstream-capture-incremental');
    this.client.on('error', (err) => this.host.fail(err));
    await this.client.connect();
    await ensureSchema(this.client, this.opts.metaSchema);
    await this.client.query(`CREATE TABLE IF NOT EXISTS ${this.table} (
      slot_name text NOT NULL, table_name text NOT NULL, signal_lsn pg_lsn NOT NULL,
      last_key text[], rows_done bigint NOT NULL DEFAULT 0,
      requested_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (slot_name, table_name))`);
    const pending = await this.nextPending();
    if (pending) {
      this.log.info({ table: pending.table, rowsDone: pending.rowsDone, lastKey: pending.lastKey }, 're-snapshot resumes');
      this.wake();
    }
  }

  /**
   * A re-snapshot request from the stream (its signal message at `signalLsn`).
   * Durable when the promise resolves: the capture holds the stream until
   * then, so the signal is not confirmed before it is recorded. A request
   * seen again (after a restart) changes nothing; a new one for a table in
   * progress starts it over.
   */
  async request(table: string, signalLsn: Lsn): Promise<void> {
    if (!this.opts.tables.includes(table)) {
      this.log.warn({ table, tables: this.opts.tables }, 're-snapshot signal for a table that is not captured; ignored');
      return;
    }
    const { rowCount } = await this.client!.query(
      `INSERT INTO ${this.table} AS s (slot_name, table_name, signal_lsn) VALUES ($1, $2, $3::text::pg_lsn)
       ON CONFLICT (slot_name, table_name) DO UPDATE SET signal_lsn = EXCLUDED.signal_lsn, last_key = NULL, rows_done = 0, requested_at = now(), updated_at = now()
       WHERE s.signal_lsn <> EXCLUDED.signal_lsn`,
      [this.opts.slot, table, formatLsn(signalLsn)]);
    if (rowCount) this.log.info({ table, lsn: formatLsn(signalLsn) }, 're-snapshot requested');
    this.wake();
  }

  /** Every streamed change, before it is published. */
  observe(ev: ChangeEvent): void {
    this.window?.observe(ev);
  }

  /**
   * A watermark message inside its transaction. At a high watermark of this
   * process, returns the chunk rows to emit now, inside that transaction.
   */
  onWatermark(content: Buffer): { relation: Relation; rows: Row[] } | null {
    let m: { id?: unknown; w?: unknown };
    try { m = JSON.parse(content.toString('utf8')); } catch { return null; }
    const w = this.window;
    if (!w || m.id !== w.id) return null;
    if (m.w === 'lw') { w.open(this.tx?.commitLsn ?? 0n); return null; }
    if (m.w !== 'hw') return null;
    const rows = w.close(this.commits);
    if (rows === null) return null;
    if (this.closed) this.closing = { window: w, resolve: this.closed };
    // A stale chunk emits nothing; snapshotTable reads it again once HW commits.
    return w.stale === null ? { relation: w.relation, rows } : null;
  }

  /** The BEGIN of every streamed transaction (xid, commit LSN). */
  onBegin(xid: number, commitLsn: Lsn): void {
    this.tx = { xid, commitLsn };
  }

  /** The commit of every streamed transaction: recorded, and completes the high watermark's. */
  onCommit(endLsn: Lsn): void {
    if (this.tx) this.commits.record(this.tx.xid, this.tx.commitLsn);
    this.tx = null;
    const c = this.closing;
    if (!c) return;
    this.closing = null;
    c.resolve(endLsn);
  }

  private wake(): void {
    if (this.running) { this.wakeAgain = true; return; }
    this.running = this.run().then(
      () => {
        this.running = null;
        if (this.wakeAgain && !this.abort.signal.aborted) { this.wakeAgain = false; this.wake(); }
      },
      (err: Error) => {
        this.running = null;
        if (!this.abort.signal.aborted) this.host.fail(err);
      },
    );
  }

  private async run(): Promise<void> {
    for (;;) {
      this.wakeAgain = false;
      const p = await this.nextPending();
      if (!p || this.abort.signal.aborted) return;
      if (!this.opts.tables.includes(p.table)) {
        // Recorded by an earlier run whose configuration captured the table.
        this.log.warn({ table: p.table }, 're-snapshot of a table no longer captured; request dropped');
        await this.client!.query(`DELETE FROM ${this.table} WHERE slot_name = $1 AND table_name = $2`, [this.opts.slot, p.table]);
        continue;
      }
      await this.snapshotTable(p);
    }
  }

  private async nextPending(): Promise<Pending | null> {
    const { rows } = await this.client!.query<{ table_name: string; signal_lsn: string; last_key: string | null; rows_done: string }>(
      `SELECT table_name, signal_lsn::text, last_key::text, rows_done::text FROM ${this.table}
        WHERE slot_name = $1 ORDER BY requested_at, table_name LIMIT 1`, [this.opts.slot]);
    const r = rows[0];
    if (!r) return null;
    // text[] arrives in text form (the client keeps Postgres' text): parse it with Postgres.
    const lastKey = r.last_key === null ? null
      : (await this.client!.query<{ k: string }>({ text: 'SELECT unnest($1::text[]) AS k', values: [r.last_key] })).rows.map((x) => x.k);
    return { table: r.table_name, signalLsn: r.signal_lsn, lastKey, rowsDone: Number(r.rows_done) };
  }

  /** Columns of the primary key in index order (the chunk query walks that index). */
  private async keyColumns(oid: number): Promise<string[]> {
    const { rows } = await this.client!.query<{ attname: string }>(
      `SELECT a.attname FROM pg_index i
         JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) ON true
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord`, [oid]);
    return rows.map((r) => r.attname);
  }

  private async snapshotTable(p: Pending): Promise<void> {
    const client = this.client!;
    const [schema, name] = p.table.split('.') as [string, string];
    const started = Date.now();
    let lastLog = started;
    let { lastKey, rowsDone } = p;
    let chunks = 0;
    let superseded = 0;
    let reread = 0;
    let shape = '';
    let relation: Relation | null = null;
    let persisted: Promise<boolean> = Promise.resolve(true);
    let keyNames: string[] = [];
    let keyPos: number[] = [];
    let parsers: ((v: string) => unknown)[] = [];
    const q = (id: string) => `"${id.replace(/"/g, '""')}"`;
    for (;;) {
      if (this.abort.signal.aborted) { await persisted.catch(() => {}); return; }
      const desc = await describeTable(client, schema, name);
      if (!desc) {
        await persisted.catch(() => {});
        this.log.warn({ table: p.table }, 're-snapshot: table vanished; request dropped');
        await client.query(`DELETE FROM ${this.table} WHERE slot_name = $1 AND table_name = $2 AND signal_lsn = $3::pg_lsn`, [this.opts.slot, p.table, p.signalLsn]);
        return;
      }
      // A new Relation (and schema registration) only when the table's shape changed.
      const nowShape = desc.columns.map((c) => `${c.name}:${c.typeOid}:${c.typeMod}:${c.isKey}`).join(',');
      if (nowShape !== shape || !relation) {
        relation = relationOf(desc);
        await this.host.prepare(relation);
        keyNames = await this.keyColumns(desc.oid);
        if (keyNames.length === 0) throw new SourceNotReadyError(`table ${p.table} has no primary key; it cannot be re-snapshotted in chunks`);
        keyPos = keyNames.map((k) => relation!.columns.findIndex((c) => c.name === k));
        parsers = relation.columns.map((c) => valueParser(c.type));
        shape = nowShape;
      }
      const rel = relation;
      const { rows: est } = await client.query<{ n: string }>('SELECT greatest(reltuples, 0)::bigint::text AS n FROM pg_class WHERE oid = $1', [desc.oid]);
      const estimated = Number(est[0]?.n ?? 0);

      const tA = performance.now();
      const window = new ChunkWindow(`${this.runId}:${++this.windowSeq}`, rel, keyNames);
      this.window = window;
      await this.watermark(window.id, 'lw');
      const cols = rel.columns.map((c) => q(c.name)).join(', ');
      const keyList = keyNames.map(q).join(', ');
      const where = lastKey ? `WHERE (${keyList}) > (${keyNames.map((_, i) => `$${i + 1}`).join(', ')})` : '';
      // One statement, so the rows and pg_current_snapshot() (an InitPlan, evaluated once)
      // come from the same snapshot: the statement's. No transaction and no second query.
      const res = await client.query({
        text: `SELECT (SELECT pg_current_snapshot()::text) AS snap, ${cols} FROM ${q(schema)}.${q(name)} ${where} ORDER BY ${keyList} LIMIT ${this.opts.chunkSize}`,
        values: lastKey ?? [], rowMode: 'array',
      });
      const raw = (res.rows as (string | null)[][]).map((r) => r.slice(1));
      const snapshot = res.rows.length > 0 ? chunkSnapshotFromText(String((res.rows[0] as unknown[])[0])) : EMPTY_CHUNK_SNAPSHOT;
      const chunk: ChunkRow[] = raw.map((r) => {
        const row = r.map((v, i) => (v === null ? null : parsers[i]!(v))) as Row;
        return { key: chunkKey(row, keyPos), row };
      });
      window.setRows(chunk, snapshot);
      const tB = performance.now();
      const committed = new Promise<Lsn>((resolve) => { this.closed = resolve; });
      await this.watermark(window.id, 'hw');
      const endLsn = await unlessAborted(committed, this.abort.signal);
      if (endLsn === null) return;
      this.closed = null;
      this.window = null;
      if (window.stale !== null) {
        // Nothing of it was emitted and nothing recorded: the same chunk again, with a new LW and a new read.
        reread += 1;
        this.log.info({ table: p.table, chunk: chunks + 1, xid: window.stale, snapshotXmax: snapshot.xmax, snapshotXip: snapshot.xip.size },
          're-snapshot chunk read again: a transaction committed before its low watermark was not visible to its read');
        continue;
      }
      superseded += chunk.length - window.emitted;
      chunks += 1;
      rowsDone += raw.length;
      const done = raw.length < this.opts.chunkSize;
      lastKey = raw.length > 0 ? keyPos.map((i) => raw[raw.length - 1]![i]!) : lastKey;
      this.log.debug({ table: p.table, chunk: chunks, rows: raw.length, emitted: window.emitted, readMs: Math.round(tB - tA), windowMs: Math.round(performance.now() - tB) }, 're-snapshot chunk');

      // The next chunk is read while this one's rows are acknowledged; its
      // progress is recorded (in chunk order) only once they all are.
      const prior = persisted;
      const key = lastKey;
      const rowsAt = rowsDone;
      persisted = prior.then(async (ok) => {
        if (!ok) return false;
        await this.host.confirmed(endLsn, this.abort.signal);
        if (this.abort.signal.aborted) return false;
        this.host.progress(p.table, rowsAt, Math.max(estimated, rowsAt));
        if (done) {
          const { rowCount } = await client.query(`DELETE FROM ${this.table} WHERE slot_name = $1 AND table_name = $2 AND signal_lsn = $3::pg_lsn`, [this.opts.slot, p.table, p.signalLsn]);
          if (rowCount) this.log.info({ table: p.table, rows: rowsAt, chunks, superseded, reread, ms: Date.now() - started }, 're-snapshot done');
          return false;
        }
        const { rowCount } = await client.query(
          `UPDATE ${this.table} SET last_key = $4::text[], rows_done = $5, updated_at = now()
            WHERE slot_name = $1 AND table_name = $2 AND signal_lsn = $3::pg_lsn`,
          [this.opts.slot, p.table, p.signalLsn, key, rowsAt]);
        if (!rowCount) this.log.info({ table: p.table }, 're-snapshot requested again; starting over');
        return rowCount === 1;
      });
      persisted.catch(() => {}); // awaited below or next round; a failure surfaces there
      // At most one chunk ahead of what is recorded.
      if (done || !(await prior)) { await persisted; return; } // a newer request (different signal) is picked up by run()
      if (Date.now() - lastLog >= this.opts.progressLogMs) {
        lastLog = Date.now();
        this.log.info({ table: p.table, rowsDone, rowsEstimated: Math.max(estimated, rowsDone), chunks }, 're-snapshot progress');
      }
      await this.host.backpressure();
    }
  }

  private async watermark(id: string, w: 'lw' | 'hw'): Promise<void> {
    // Autocommit: each watermark is its own transaction, so the stream delivers it at its commit.
    await this.client!.query('SELECT pg_logical_emit_message(true, $1, $2)', [WINDOW_PREFIX, JSON.stringify({ id, w })]);
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running?.catch(() => {});
    await this.client?.end().catch(() => {});
    this.client = null;
  }
}

/** Resolves with `p`'s value, or null once `signal` aborts. */
function unlessAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T | null> {
  if (signal.aborted) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve(null);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then((v) => { signal.removeEventListener('abort', onAbort); resolve(v); }, (e: unknown) => { signal.removeEventListener('abort', onAbort); reject(e); });
  });
}
