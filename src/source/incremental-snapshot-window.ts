import type { ChangeEvent, Relation, Row } from './change-event.ts';

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
 * One chunk's window as the capture drives it: `open` at LW, `observe` every
 * streamed change, `close` at HW. Changes before `open` are reflected in the
 * chunk already and are not recorded.
 */
export class ChunkWindow {
  private phase: 'pending' | 'open' | 'closed' = 'pending';
  private readonly keys = new Set<string>();
  private truncated = false;
  private chunk: ChunkRow[] | null = null;
  /** Rows of the chunk emitted at HW (the rest were superseded). */
  emitted = 0;

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

  open(): void {
    if (this.phase === 'pending') this.phase = 'open';
  }

  /** The chunk read between the watermarks; always set before HW is written. */
  setRows(rows: ChunkRow[]): void {
    this.chunk = rows;
  }

  observe(ev: ChangeEvent): void {
    if (this.phase !== 'open') return;
    const k = eventKeys(ev, this.relation.schema, this.relation.table, this.keyNames);
    if (k === 'truncate') this.truncated = true;
    else for (const key of k) this.keys.add(key);
  }

  /** Rows to emit at HW; null when the chunk was never set (a window of an earlier process). */
  close(): Row[] | null {
    if (this.phase === 'closed' || !this.chunk) return null;
    this.phase = 'closed';
    const rows = remainingRows(this.chunk, { keys: this.keys, truncated: this.truncated });
    this.emitted = rows.length;
    this.chunk = null;
    this.keys.clear();
    return rows;
  }
}
