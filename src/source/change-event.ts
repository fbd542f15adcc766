import { ValidationError } from '../errors.ts';
import type { Lsn } from './lsn.ts';
import { Unavailable, type ColumnType, type ColumnValue } from './pg-values.ts';

/**
 * The one in-process representation of a captured row change. Everything
 * downstream (Avro envelope, keys, acking) is derived from it. Rows are
 * arrays aligned with `relation.columns` rather than objects: the capture
 * builds hundreds of thousands of them per second.
 */
export interface Column {
  name: string;
  typeOid: number;
  typeMod: number;
  /** Part of the replica identity (the primary key for the demo tables). */
  isKey: boolean;
  type: ColumnType;
}

export interface Relation {
  oid: number;
  schema: string;
  table: string;
  /** pgoutput replica identity: d(efault) n(othing) f(ull) i(ndex). */
  replicaIdentity: 'd' | 'n' | 'f' | 'i';
  columns: Column[];
  /** Indexes into `columns` of the key columns, in column order. */
  keyIndexes: number[];
}

export type Row = ColumnValue[];

/** Where a change sits in its source transaction. */
export interface TxPosition {
  /** Source transaction id (xid); for snapshot reads the snapshot transaction's. */
  txId: number;
  /** LSN of the transaction's commit record (pgoutput Begin final_lsn); for snapshot reads the slot's consistent point. */
  commitLsn: Lsn;
  /**
   * End LSN of the last transaction committed before this one in the stream
   * (Debezium's `source.sequence[0]`). (lastCommitLsn, lsn) grows strictly
   * in stream order, which is commit order: it is the ordering key consumers
   * use (docs/capture.md, "Order of changes").
   */
  lastCommitLsn: Lsn;
  /** Commit time, microseconds since the Unix epoch. */
  commitTimeUs: bigint;
  /** 1-based position among all events of the transaction. */
  totalOrder: number;
  /** 1-based position among the transaction's events for this table. */
  tableOrder: number;
}

interface Base extends TxPosition {
  relation: Relation;
  /** LSN of the change itself (XLogData start); equals commitLsn for snapshot reads. */
  lsn: Lsn;
}

export interface InsertEvent extends Base { kind: 'insert'; after: Row }
/** `before` is null unless the table's replica identity sent an old tuple; `beforeKeyOnly` when only key columns were sent. */
export interface UpdateEvent extends Base { kind: 'update'; before: Row | null; beforeKeyOnly: boolean; after: Row }
export interface DeleteEvent extends Base { kind: 'delete'; before: Row; beforeKeyOnly: boolean }
export interface TruncateEvent extends Base { kind: 'truncate' }
export type SnapshotMarker = 'first' | 'true' | 'last' | 'first_in_data_collection' | 'last_in_data_collection' | 'incremental';
export interface ReadEvent extends Base { kind: 'read'; after: Row; snapshot: SnapshotMarker }

export type ChangeEvent = InsertEvent | UpdateEvent | DeleteEvent | TruncateEvent | ReadEvent;
export type ChangeKind = ChangeEvent['kind'];

/** Debezium `op` codes. */
export const OP_CODE: Record<ChangeKind, 'c' | 'u' | 'd' | 't' | 'r'> = {
  insert: 'c', update: 'u', delete: 'd', truncate: 't', read: 'r',
};

function fail(ev: { relation?: Relation; lsn?: unknown }, msg: string): never {
  const where = ev.relation ? `${ev.relation.schema}.${ev.relation.table}` : '?';
  throw new ValidationError(`invalid change event for ${where} at lsn ${String(ev.lsn)}: ${msg}`);
}

function checkValue(col: Column, v: ColumnValue, allowUnavailable: boolean): string | undefined {
  if (v === null) return undefined;
  if (v instanceof Unavailable) return allowUnavailable ? undefined : 'unavailable (unchanged TOAST) value outside an update';
  if (col.type.isArray) return Array.isArray(v) ? undefined : 'expected an array';
  switch (col.type.kind) {
    case 'bool': return typeof v === 'boolean' ? undefined : 'expected boolean';
    case 'int16': case 'int32': return Number.isInteger(v) ? undefined : 'expected an integer';
    case 'int64': case 'timestamp': case 'timestamptz': case 'time': return typeof v === 'bigint' ? undefined : 'expected bigint';
    case 'float32': case 'float64': return typeof v === 'number' ? undefined : 'expected a number';
    case 'date': return Number.isInteger(v) ? undefined : 'expected days since epoch';
    case 'bytea': return Buffer.isBuffer(v) ? undefined : 'expected bytes';
    case 'numeric': return typeof v === 'string' && /^(-?\d+(\.\d+)?|NaN|-?Infinity)$/.test(v) ? undefined : 'expected a decimal string';
    default: return typeof v === 'string' ? undefined : 'expected text';
  }
}

function checkRow(ev: ChangeEvent, row: Row, what: string, opts: { allowUnavailable: boolean; keyOnly: boolean }): void {
  const cols = ev.relation.columns;
  if (!Array.isArray(row) || row.length !== cols.length) fail(ev, `${what} has ${Array.isArray(row) ? row.length : 'no'} values for ${cols.length} columns`);
  for (let i = 0; i < cols.length; i++) {
    const col = cols[i]!;
    if (opts.keyOnly && !col.isKey) continue;
    const problem = checkValue(col, row[i]!, opts.allowUnavailable);
    if (problem) fail(ev, `${what}.${col.name}: ${problem}`);
  }
  for (const k of ev.relation.keyIndexes) {
    if (row[k] === null || row[k] instanceof Unavailable) fail(ev, `${what} key column ${cols[k]!.name} is missing`);
  }
}

/**
 * Runtime check of the invariants the publisher relies on. Cheap enough to
 * run on every event: the cost is a few type tests per column.
 */
export function validateChangeEvent(ev: ChangeEvent): ChangeEvent {
  if (typeof ev !== 'object' || ev === null) throw new ValidationError('change event is not an object');
  const r = ev.relation;
  if (!r || typeof r.schema !== 'string' || typeof r.table !== 'string' || !Array.isArray(r.columns)) fail(ev, 'missing relation');
  if (typeof ev.lsn !== 'bigint' || ev.lsn < 0n) fail(ev, 'lsn must be a non-negative bigint');
  if (typeof ev.commitLsn !== 'bigint' || ev.commitLsn < 0n) fail(ev, 'commitLsn must be a non-negative bigint');
  if (typeof ev.lastCommitLsn !== 'bigint' || ev.lastCommitLsn < 0n) fail(ev, 'lastCommitLsn must be a non-negative bigint');
  if (typeof ev.commitTimeUs !== 'bigint') fail(ev, 'commitTimeUs must be a bigint');
  if (!Number.isInteger(ev.txId) || ev.txId < 0) fail(ev, 'txId must be a non-negative integer');
  if (!Number.isInteger(ev.totalOrder) || ev.totalOrder < 1) fail(ev, 'totalOrder must be >= 1');
  if (!Number.isInteger(ev.tableOrder) || ev.tableOrder < 1 || ev.tableOrder > ev.totalOrder) fail(ev, 'tableOrder must be in 1..totalOrder');
  switch (ev.kind) {
    case 'insert':
      checkRow(ev, ev.after, 'after', { allowUnavailable: false, keyOnly: false });
      break;
    case 'read':
      checkRow(ev, ev.after, 'after', { allowUnavailable: false, keyOnly: false });
      if (!['first', 'true', 'last', 'first_in_data_collection', 'last_in_data_collection', 'incremental'].includes(ev.snapshot)) fail(ev, `bad snapshot marker ${String(ev.snapshot)}`);
      break;
    case 'update':
      checkRow(ev, ev.after, 'after', { allowUnavailable: true, keyOnly: false });
      if (ev.before !== null) checkRow(ev, ev.before, 'before', { allowUnavailable: true, keyOnly: ev.beforeKeyOnly });
      break;
    case 'delete':
      checkRow(ev, ev.before, 'before', { allowUnavailable: true, keyOnly: ev.beforeKeyOnly });
      break;
    case 'truncate':
      break;
    default:
      fail(ev, `unknown kind ${String((ev as { kind: unknown }).kind)}`);
  }
  return ev;
}

/** The row that identifies the changed record (Kafka key source). */
export function keyRow(ev: ChangeEvent): Row | null {
  switch (ev.kind) {
    case 'insert': case 'read': case 'update': return ev.after;
    case 'delete': return ev.before;
    case 'truncate': return null;
  }
}
