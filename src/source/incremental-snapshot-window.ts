import type { ChangeEvent, Relation, Row } from './change-event.ts';
import type { Lsn } from './lsn.ts';
import type { RecentCommits } from './recent-commits.ts';

/**
 * The DBLog window of one incremental-snapshot chunk, as pure logic.
 *
 * The capture writes a low watermark (LW), reads a chunk of rows by primary
 * key in one statement, then writes a high watermark (HW). Both watermarks
 * are transactional logical messages, so the stream delivers them at their
 * commit positions, in commit order with every other transaction.
 *
 * Between LW and HW the stream carries every transaction that committed in
 * that span, and only those. A chunk row whose key such a transaction touched
 * may be older than what the stream already said about the key (the
 * transaction may have committed after the read), so it is dropped: the
 * stream's event is at least as new. Every other chunk row is emitted at HW;
 * it reflects every transaction committed before LW (streamed before it) and
 * none committed after HW (streamed after it), so per key the topic stays in
 * commit order. A delete in the window drops the key, a row deleted before
 * the read is not read: nothing is resurrected.
 *
 * "Committed before LW" is WAL order, while the read sees what is visible,
 * and Postgres writes a commit record before it makes the transaction
 * visible. A transaction X whose commit record precedes LW's but which is
 * still in progress in the read's snapshot is streamed before the window
 * (its keys are not marked) and missing from the rows: emitted at HW, they
 * would overwrite X's change with older rows. So the read also returns its
 * snapshot's in-progress xids (ChunkSnapshot), and at HW a chunk is stale
 * when a transaction the stream committed before LW is invisible in it: it
 * is dropped and read again (staleXid).
 */
export interface ChunkRow {
  /** Canonical key text (chunkKey / eventKeys). */
  key: string;
  row: Row;
}

/** What the stream said inside the window, reduced to what supersedes chunk rows. */
export interface WindowSeen {
  keys: ReadonlySet<string>;
  /** A truncate of the table in the window supersedes every row of the chunk. */
  truncated: boolean;
}

/** The chunk rows still to emit at the high watermark, in chunk (key) order. */
export function remainingRows(chunk: readonly ChunkRow[], seen: WindowSeen): Row[] {
  if (seen.truncated) return [];
  const out: Row[] = [];
  for (const r of chunk) if (!seen.keys.has(r.key)) out.push(r.row);
  return out;
}

/**
 * The chunk read's snapshot as the stream's 32-bit xids: the xids in
 * progress (pg_snapshot_xip, top-level, the ones pgoutput BEGIN carries) and
 * xmax. Xids at or after xmax are invisible too and are not listed in xip
 * (GetSnapshotData skips them), so xmax is needed, not just xip.
 */
export interface ChunkSnapshot {
  xip: ReadonlySet<number>;
  xmax: number;
}

/** ChunkSnapshot from pg_snapshot_xip / pg_snapshot_xmax as text (xid8: epoch << 32 | xid). */
export function chunkSnapshot(xip: readonly string[], xmax: string): ChunkSnapshot {
  const low = (t: string) => Number(BigInt(t) & 0xffffffffn);
  return { xip: new Set(xip.map(low)), xmax: low(xmax) };
}

/** From pg_snapshot's text form `xmin:xmax:xip,xip,...` (pg_current_snapshot()::text). */
export function chunkSnapshotFromText(text: string): ChunkSnapshot {
  const [, xmax, xip] = text.split(':');
  if (xmax === undefined || !/^\d+$/.test(xmax)) throw new Error(`not a pg_snapshot: ${text}`);
  return chunkSnapshot(xip ? xip.split(',') : [], xmax);
}

/** The snapshot of a read that returned no rows: nothing to overwrite, so never stale (ChunkWindow.close). */
export const EMPTY_CHUNK_SNAPSHOT: ChunkSnapshot = Object.freeze({ xip: new Set<number>(), xmax: 0 });

/**
 * Whether the stream's xid was invisible to the snapshot. 32-bit xids
 * compare modulo 2^32 (Postgres' TransactionIdFollowsOrEquals): exact for
 * xids within 2^31 of xmax, which every recent commit is.
 */
export function invisibleIn(snap: ChunkSnapshot, xid: number): boolean {
  return snap.xip.has(xid) || ((xid - snap.xmax) | 0) >= 0;
}

/**
 * The xid that makes a chunk stale, or null: a transaction the stream
 * committed before the low watermark (commit LSN < LW's commit LSN) that the
 * chunk's snapshot did not see. A transaction committing at or after LW is
 * in the window (its keys are marked) or after HW (it follows the rows); one
 * never streamed before LW did not commit before it (or is older than the
 * record: RECENT_COMMITS).
 */
export function staleXid(snap: ChunkSnapshot, commits: RecentCommits, lowLsn: Lsn): number | null {
  return commits.findBefore(lowLsn, (xid) => invisibleIn(snap, xid));
}

function keyText(values: readonly unknown[]): string {
  return JSON.stringify(values, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v));
}

/** Canonical key of a row, from the values at `keyIndexes` (parsed as pgoutput and the chunk read both parse them). */
export function chunkKey(row: Row, keyIndexes: readonly number[]): string {
  return keyText(keyIndexes.map((i) => row[i]));
}

const indexCache = new WeakMap<Relation, number[] | null>();

/** Indexes of `keyNames` in the event's relation (which may be another Relation object than the chunk's). */
function keyIndexesIn(relation: Relation, keyNames: readonly string[]): number[] | null {
  let idx = indexCache.get(relation);
  if (idx === undefined) {
    const found = keyNames.map((n) => relation.columns.findIndex((c) => c.name === n));
    idx = found.some((i) => i < 0) ? null : found;
    indexCache.set(relation, idx);
  }
  return idx;
}

/**
 * Keys of the table a streamed change touches: both keys of a primary-key
 * change, 'truncate' for a truncate, [] for other tables.
 */
export function eventKeys(ev: ChangeEvent, schema: string, table: string, keyNames: readonly string[]): string[] | 'truncate' {
  if (ev.relation.schema !== schema || ev.relation.table !== table) return [];
  if (ev.kind === 'truncate') return 'truncate';
  const idx = keyIndexesIn(ev.relation, keyNames);
  // A shape without the key columns cannot be matched key by key: drop the whole chunk rather than guess.
  if (!idx) return 'truncate';
  const out: string[] = [];
  if ((ev.kind === 'update' || ev.kind === 'delete') && ev.before) out.push(chunkKey(ev.before, idx));
  if (ev.kind === 'insert' || ev.kind === 'update' || ev.kind === 'read') out.push(chunkKey(ev.after, idx));
  return out;
}

/**
 * One chunk's window as the capture drives it: `open` at LW (with LW's commit
 * LSN), `observe` every streamed change, `close` at HW. Changes before `open`
 * are reflected in the chunk already and are not recorded, unless the read
 * did not see them: then `close` finds the chunk stale and emits nothing.
 */
export class ChunkWindow {
  private phase: 'pending' | 'open' | 'closed' = 'pending';
  private readonly keys = new Set<string>();
  private truncated = false;
  private chunk: ChunkRow[] | null = null;
  private snapshot: ChunkSnapshot | null = null;
  private lowLsn: Lsn = 0n;
  /** Rows of the chunk emitted at HW (the rest were superseded). */
  emitted = 0;
  /** Set at HW when the chunk was stale: the xid its read did not see (0: LW never streamed); the chunk must be read again. */
  stale: number | null = null;

  constructor(
    readonly id: string,
    readonly relation: Relation,
    readonly keyNames: readonly string[],
  ) {}

  get isOpen(): boolean {
    return this.phase === 'open';
  }

  get isClosed(): boolean {
    return this.phase === 'closed';
  }

  /** At LW; `lowLsn` is the commit LSN of LW's transaction. */
  open(lowLsn: Lsn): void {
    if (this.phase !== 'pending') return;
    this.phase = 'open';
    this.lowLsn = lowLsn;
  }

  /** The chunk read between the watermarks and its snapshot; always set before HW is written. */
  setRows(rows: ChunkRow[], snapshot: ChunkSnapshot): void {
    this.chunk = rows;
    this.snapshot = snapshot;
  }

  observe(ev: ChangeEvent): void {
    if (this.phase !== 'open') return;
    const k = eventKeys(ev, this.relation.schema, this.relation.table, this.keyNames);
    if (k === 'truncate') this.truncated = true;
    else for (const key of k) this.keys.add(key);
  }

  /**
   * Rows to emit at HW; null when the chunk was never set (a window of an
   * earlier process), and [] with `stale` set when the chunk must be read
   * again. `commits` holds the stream's commits up to HW.
   */
  close(commits: RecentCommits): Row[] | null {
    if (this.phase === 'closed' || !this.chunk || !this.snapshot) return null;
    // A window never opened (its LW not streamed) cannot prove what it missed.
    const stale = this.chunk.length === 0 ? null : this.phase === 'open' ? staleXid(this.snapshot, commits, this.lowLsn) : 0;
    this.phase = 'closed';
    this.stale = stale;
    const rows = stale === null ? remainingRows(this.chunk, { keys: this.keys, truncated: this.truncated }) : [];
    this.emitted = rows.length;
    this.chunk = null;
    this.snapshot = null;
    this.keys.clear();
    return rows;
  }
}
