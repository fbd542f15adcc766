import { ValidationError } from '../errors.ts';
import { canonicalInstant } from '../transforms/time.ts';
import { DECIMAL_STRING, decimalFromBytes } from './avro.ts';
import type { ExtraColumn } from './column-types.ts';
import { TABLES, isTableName, type Row, type TableName, type TableSpec } from './tables.ts';

/**
 * Runtime validation of a decoded Debezium envelope into a typed change.
 * Accepts both our capture's output and Debezium's PostgreSQL connector:
 * the same envelope and the same default encodings.
 */
export type Op = 'c' | 'u' | 'd' | 'r' | 't';

export interface RowChange {
  table: TableName;
  op: Op;
  before: Row | null;
  after: Row | null;
  /** LSN of the change (Debezium `source.lsn`). */
  lsn: bigint;
  /**
   * Commit-order rank of the change's transaction: `source.sequence[0]`, the
   * last LSN committed before it (0 when absent). Which version of a row wins
   * is decided by (seq, lsn), never by `lsn` alone: a change's own LSN is not
   * commit order across concurrent transactions (see orderKey, docs/consumers.md).
   */
  seq: bigint;
  /** Commit time in µs since the epoch: `source.ts_us`, else `source.ts_ms` × 1000. */
  commitUs: bigint;
  txId: bigint | null;
  /** Columns of `after` the source did not send (unchanged TOASTed values) and `before` could not fill. */
  unavailable: string[];
  /**
   * Source columns beyond the modelled ones (added after the pipeline was
   * built), name → Postgres type; their values are in the row images.
   * Staging follows them (docs/consumers.md, "Schema changes").
   */
  extraColumns?: Record<string, string>;
}

/** Debezium's placeholder for an unchanged TOASTed value (`unavailable.value.placeholder`). */
export const UNAVAILABLE = '__debezium_unavailable_value';

const OPS: readonly string[] = ['c', 'u', 'd', 'r', 't'];

function fail(msg: string): never {
  throw new ValidationError(msg);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v);
}

function toBigint(v: unknown, what: string): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v);
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return BigInt(v);
  return fail(`${what} must be an integer, got ${typeof v}`);
}

function normaliseValue(kind: string, v: unknown, col: string): string | null | typeof UNAVAILABLE {
  if (v === null || v === undefined) return null;
  if (v === UNAVAILABLE) return UNAVAILABLE;
  switch (kind) {
    case 'bigint':
    case 'int':
      return toBigint(v, col).toString();
    case 'text':
      if (typeof v !== 'string') fail(`${col} must be a string`);
      return v;
    case 'numeric':
      if (typeof v === 'string' && DECIMAL_STRING.test(v)) return v; // decimal logical type, or decimal.handling.mode=string
      if (isRecord(v) && Buffer.isBuffer(v.value) && (typeof v.scale === 'number' || typeof v.scale === 'bigint')) {
        return decimalFromBytes(v.value, Number(v.scale)); // io.debezium.data.VariableScaleDecimal
      }
      if (typeof v === 'number') fail(`${col} arrived as a binary float; money must be exact (set Debezium decimal.handling.mode=precise or string)`);
      return fail(`${col} is not a decimal`);
    case 'timestamptz': {
      if (typeof v !== 'string') fail(`${col} must be an ISO timestamp string (io.debezium.time.ZonedTimestamp)`);
      return canonicalInstant(v) ?? fail(`${col} is not an ISO timestamp: ${v}`);
    }
    default:
      return fail(`unknown column kind ${kind}`);
  }
}

function normaliseRow(spec: TableSpec, raw: unknown, image: string, extras: readonly ExtraColumn[]): { row: Row; unavailable: string[] } | null {
  if (raw === null || raw === undefined) return null;
  if (!isRecord(raw)) fail(`${image} must be a record`);
  const row: Row = {};
  const unavailable: string[] = [];
  for (const [col, kind] of Object.entries(spec.columns)) {
    const v = normaliseValue(kind, raw[col], `${spec.name}.${image}.${col}`);
    if (v === UNAVAILABLE) {
      unavailable.push(col);
      row[col] = null;
    } else {
      row[col] = v;
    }
  }
  for (const x of extras) {
    const v = raw[x.name];
    if (v === UNAVAILABLE) {
      unavailable.push(x.name);
      row[x.name] = null;
    } else {
      try {
        row[x.name] = x.normalise(v);
      } catch (err) {
        fail(`${spec.name}.${image}.${x.name} is not a ${x.sqlType}: ${(err as Error).message}`);
      }
    }
  }
  return { row, unavailable };
}

const SEQUENCE = /^\[\s*(null|"\d*"|\d+)\s*,\s*(null|"\d*"|\d+)\s*\]$/;

/**
 * `source.sequence[0]` as a bigint: Debezium's `[last committed LSN, this
 * event's LSN]` (JSON text of two decimal strings or nulls). Missing or null
 * ranks as `lsn`, the change's own LSN. Debezium writes a null first element
 * for the events before it has processed a commit after a fresh start; those
 * events then still sort after every change of an earlier transaction (whose
 * previous-commit LSN lies below any LSN of theirs) and before every later
 * transaction (whose previous-commit LSN is at least their commit LSN),
 * where 0 would sort them below everything applied before.
 */
export function sequenceRank(sequence: unknown, lsn: bigint): bigint {
  if (sequence === null || sequence === undefined) return lsn;
  if (typeof sequence !== 'string') return fail(`source.sequence must be a string, got ${typeof sequence}`);
  const m = SEQUENCE.exec(sequence.trim());
  if (!m) return fail(`source.sequence is not [lsn, lsn]: ${sequence.slice(0, 80)}`);
  const first = m[1]!.replace(/"/g, '');
  return first === 'null' || first === '' ? lsn : BigInt(first);
}

/** -1, 0, 1 as `a` is applied before, with, or after `b` in commit order. */
export function compareOrder(a: { seq: bigint; lsn: bigint }, b: { seq: bigint; lsn: bigint }): number {
  if (a.seq !== b.seq) return a.seq < b.seq ? -1 : 1;
  return a.lsn < b.lsn ? -1 : a.lsn > b.lsn ? 1 : 0;
}

/** `columns`: the writer schema's row columns (column-types.ts); the ones the table's spec does not model are carried as extraColumns. */
export function validateEnvelope(value: unknown, columns: readonly ExtraColumn[] = []): RowChange {
  if (!isRecord(value)) fail('envelope must be a record');
  const op = value.op;
  if (typeof op !== 'string' || !OPS.includes(op)) fail(`op must be one of ${OPS.join(',')}, got ${String(op)}`);
  const source = value.source;
  if (!isRecord(source)) fail('source block is missing');
  const table = source.table;
  if (!isTableName(table)) fail(`source.table ${String(table)} is not a table this consumer knows`);
  const spec = TABLES[table];
  if (source.lsn === null || source.lsn === undefined) fail('source.lsn is missing');
  const lsn = toBigint(source.lsn, 'source.lsn');
  const seq = sequenceRank(source.sequence, lsn);
  const commitUs = source.ts_us !== null && source.ts_us !== undefined
    ? toBigint(source.ts_us, 'source.ts_us')
    : toBigint(source.ts_ms, 'source.ts_ms') * 1000n;
  const txId = source.txId === null || source.txId === undefined ? null : toBigint(source.txId, 'source.txId');

  const extras = columns.filter((c) => !(c.name in spec.columns) && /^[a-z_][a-z0-9_]{0,62}$/.test(c.name));
  const before = normaliseRow(spec, value.before, 'before', extras);
  const after = normaliseRow(spec, value.after, 'after', extras);
  const change: RowChange = { table, op: op as Op, before: before?.row ?? null, after: after?.row ?? null, lsn, seq, commitUs, txId, unavailable: [] };
  if (extras.length > 0) change.extraColumns = Object.fromEntries(extras.map((c) => [c.name, c.sqlType]));
  if (op === 't') return change;
  const image = op === 'd' ? before : after;
  if (!image) fail(`op ${op} without ${op === 'd' ? 'before' : 'after'} image`);
  const needed = op === 'd' ? spec.key : spec.required;
  for (const col of needed) {
    if (image.row[col] === null) fail(`${table}.${col} is required but null (op ${op})`);
  }
  if (after) {
    // Fill unchanged TOASTed values from the before-image (REPLICA IDENTITY
    // FULL); what stays unknown is kept from staging by the upsert.
    for (const col of after.unavailable) {
      const prior = before && !before.unavailable.includes(col) ? before.row[col] : null;
      if (prior !== null && prior !== undefined) after.row[col] = prior;
      else change.unavailable.push(col);
    }
    for (const col of spec.key) if (change.unavailable.includes(col)) fail(`key column ${col} unavailable`);
  }
  return change;
}
