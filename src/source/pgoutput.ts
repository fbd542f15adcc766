import { DecodeError } from '../errors.ts';
import type { ChangeEvent, Column, Relation, Row } from './change-event.ts';
import type { Lsn } from './lsn.ts';
import { columnType, PG_EPOCH_MICROS, timestampAt, UNAVAILABLE, valueParser, type ColumnValue } from './pg-values.ts';

/**
 * Decoder for pgoutput protocol v1 messages (the payload of XLogData). It is
 * stateful: it keeps the relation cache (Relation messages precede the first
 * change to a table in each session and after every DDL) and the current
 * transaction, and hands out fully typed ChangeEvents. Written here rather
 * than taken from pg-logical-replication because that parser converts
 * timestamps to Dates (losing microseconds) and we need typed values in one
 * pass.
 */
export interface DecoderSink {
  begin(tx: { finalLsn: Lsn; commitTimeUs: bigint; txId: number }): void;
  commit(c: { commitLsn: Lsn; endLsn: Lsn; commitTimeUs: bigint }): void;
  relation(r: Relation, changed: boolean): void;
  change(ev: ChangeEvent): void;
  message(m: { lsn: Lsn; transactional: boolean; prefix: string; content: Buffer }): void;
}

interface RelationEntry {
  relation: Relation;
  parsers: ((text: string) => ColumnValue)[];
  /** Per column: 1 int16/int32, 2 int64, 3 timestamp(tz): read from the bytes, no string made; 0 anything else. */
  ints: Uint8Array;
}

/**
 * A decimal integer of at most 15 digits (exact in a double) straight from
 * the tuple's bytes; NaN for anything else, which then takes the text parser.
 * Most backlog columns are ids and quantities: this spares a string and a
 * BigInt(string) parse each.
 */
export function smallIntAt(buf: Buffer, start: number, end: number): number {
  let i = start;
  const neg = buf[i] === 0x2d;
  if (neg) i++;
  if (i === end || end - i > 15) return NaN;
  let n = 0;
  for (; i < end; i++) {
    const d = buf[i]! - 48;
    if (d < 0 || d > 9) return NaN;
    n = n * 10 + d;
  }
  return neg ? -n : n;
}

class Reader {
  pos: number;
  constructor(readonly buf: Buffer, pos: number) { this.pos = pos; }
  u8(): number { return this.buf[this.pos++]!; }
  i16(): number { const v = this.buf.readInt16BE(this.pos); this.pos += 2; return v; }
  i32(): number { const v = this.buf.readInt32BE(this.pos); this.pos += 4; return v; }
  u32(): number { const v = this.buf.readUInt32BE(this.pos); this.pos += 4; return v; }
  u64(): bigint { const v = this.buf.readBigUInt64BE(this.pos); this.pos += 8; return v; }
  i64(): bigint { const v = this.buf.readBigInt64BE(this.pos); this.pos += 8; return v; }
  cstr(): string {
    const end = this.buf.indexOf(0, this.pos);
    if (end < 0) throw new DecodeError('unterminated string in pgoutput message');
    const s = this.buf.toString('utf8', this.pos, end);
    this.pos = end + 1;
    return s;
  }
}

function sameShape(a: Relation, b: Relation): boolean {
  if (a.schema !== b.schema || a.table !== b.table || a.columns.length !== b.columns.length) return false;
  return a.columns.every((c, i) => {
    const d = b.columns[i]!;
    // isKey is not compared: with REPLICA IDENTITY FULL pgoutput flags every column, and the capture
    // replaces the flags with the primary key from the catalog (see catalog.ts).
    return c.name === d.name && c.typeOid === d.typeOid && c.typeMod === d.typeMod;
  });
}

export class PgoutputDecoder {
  private readonly relations = new Map<number, RelationEntry>();
  private tx: { txId: number; commitLsn: Lsn; lastCommitLsn: Lsn; commitTimeUs: bigint; total: number; seq: number } | null = null;
  /** Per table oid: changes counted in transaction `seq` (one Map get per change, no Map per transaction). */
  private readonly tableCounts = new Map<number, { seq: number; n: number }>();
  private txSeq = 0;
  private lastCommitEnd: Lsn = 0n;

  constructor(private readonly sink: DecoderSink) {}

  get inTransaction(): boolean {
    return this.tx !== null;
  }

  /** End LSN of the last transaction decoded (or the streaming start point before the first). */
  get lastCommitLsn(): Lsn {
    return this.lastCommitEnd;
  }

  /**
   * Where streaming starts: every transaction sent from there commits after
   * it, and everything already in Kafka ended at or before it, so it stands
   * in for the (unknown) previous commit of the first transaction.
   */
  startAt(lsn: Lsn): void {
    this.lastCommitEnd = lsn;
  }

  /** Decodes one pgoutput message; `lsn` is the XLogData start position. */
  decode(buf: Buffer, offset: number, lsn: Lsn): void {
    const r = new Reader(buf, offset);
    const tag = r.u8();
    switch (tag) {
      case 0x42: { // 'B' Begin
        const finalLsn = r.u64();
        const commitTimeUs = r.i64() + PG_EPOCH_MICROS;
        const txId = r.u32();
        this.tx = { txId, commitLsn: finalLsn, lastCommitLsn: this.lastCommitEnd, commitTimeUs, total: 0, seq: ++this.txSeq };
        this.sink.begin({ finalLsn, commitTimeUs, txId });
        return;
      }
      case 0x43: { // 'C' Commit
        r.u8(); // flags, unused
        const commitLsn = r.u64();
        const endLsn = r.u64();
        const commitTimeUs = r.i64() + PG_EPOCH_MICROS;
        this.tx = null;
        if (endLsn > this.lastCommitEnd) this.lastCommitEnd = endLsn;
        this.sink.commit({ commitLsn, endLsn, commitTimeUs });
        return;
      }
      case 0x52: return this.decodeRelation(r);
      case 0x49: { // 'I' Insert
        const e = this.entry(r.u32());
        if (r.u8() !== 0x4e) throw new DecodeError('insert without new tuple');
        // Inserts are most of a backlog: built as one literal, not spread from the position (one object less each).
        const after = this.tuple(r, e);
        const tx = this.advance(e.relation);
        this.emit({
          kind: 'insert', after, relation: e.relation, lsn, commitLsn: tx.commitLsn, lastCommitLsn: tx.lastCommitLsn,
          txId: tx.txId, commitTimeUs: tx.commitTimeUs, totalOrder: tx.total, tableOrder: this.lastTableOrder,
        });
        return;
      }
      case 0x55: { // 'U' Update
        const e = this.entry(r.u32());
        let t = r.u8();
        let before: Row | null = null;
        let beforeKeyOnly = false;
        if (t === 0x4b || t === 0x4f) { // 'K' key-only old tuple, 'O' full old tuple
          beforeKeyOnly = t === 0x4b;
          before = this.tuple(r, e);
          t = r.u8();
        }
        if (t !== 0x4e) throw new DecodeError('update without new tuple');
        const after = this.tuple(r, e);
        this.emit({ kind: 'update', before, beforeKeyOnly, after, ...this.position(e, lsn) });
        return;
      }
      case 0x44: { // 'D' Delete
        const e = this.entry(r.u32());
        const t = r.u8();
        if (t !== 0x4b && t !== 0x4f) throw new DecodeError('delete without old tuple (replica identity nothing?)');
        const before = this.tuple(r, e);
        this.emit({ kind: 'delete', before, beforeKeyOnly: t === 0x4b, ...this.position(e, lsn) });
        return;
      }
      case 0x54: { // 'T' Truncate
        const n = r.u32();
        r.u8(); // options: cascade / restart identity
        for (let i = 0; i < n; i++) {
          const e = this.entry(r.u32());
          this.emit({ kind: 'truncate', ...this.position(e, lsn) });
        }
        return;
      }
      case 0x4d: { // 'M' logical decoding message
        const transactional = (r.u8() & 1) === 1;
        const mlsn = r.u64();
        const prefix = r.cstr();
        const len = r.u32();
        const content = buf.subarray(r.pos, r.pos + len);
        this.sink.message({ lsn: mlsn, transactional, prefix, content });
        return;
      }
      case 0x4f: // 'O' Origin
      case 0x59: // 'Y' Type: enum/domain names; we carry such values as text
        return;
      default:
        throw new DecodeError(`unknown pgoutput message '${String.fromCharCode(tag)}' (0x${tag.toString(16)})`);
    }
  }

  private emit(ev: ChangeEvent): void {
    this.sink.change(ev);
  }

  private position(e: RelationEntry, lsn: Lsn) {
    return this.positionIn(e.relation, lsn);
  }

  /**
   * The next position in the open transaction, for an event the capture adds
   * to it (incremental-snapshot rows emitted at their high watermark).
   */
  positionIn(relation: Relation, lsn: Lsn) {
    const tx = this.advance(relation);
    return { relation, lsn, commitLsn: tx.commitLsn, lastCommitLsn: tx.lastCommitLsn, txId: tx.txId, commitTimeUs: tx.commitTimeUs, totalOrder: tx.total, tableOrder: this.lastTableOrder };
  }

  /** Table order of the change `advance` counted last. */
  private lastTableOrder = 0;

  /** Counts one more change of `relation` in the open transaction. */
  private advance(relation: Relation) {
    const tx = this.tx;
    if (!tx) throw new DecodeError('row change outside a transaction');
    tx.total += 1;
    const oid = relation.oid;
    let c = this.tableCounts.get(oid);
    if (!c) this.tableCounts.set(oid, (c = { seq: 0, n: 0 }));
    if (c.seq !== tx.seq) { c.seq = tx.seq; c.n = 0; }
    const tableOrder = ++c.n;
    this.lastTableOrder = tableOrder;
    return tx;
  }

  private entry(oid: number): RelationEntry {
    const e = this.relations.get(oid);
    if (!e) throw new DecodeError(`change for relation ${oid} before its Relation message`);
    return e;
  }

  private decodeRelation(r: Reader): void {
    const oid = r.u32();
    const schema = r.cstr();
    const table = r.cstr();
    const replicaIdentity = String.fromCharCode(r.u8()) as Relation['replicaIdentity'];
    const n = r.i16();
    const columns: Column[] = [];
    for (let i = 0; i < n; i++) {
      const isKey = (r.u8() & 1) === 1;
      const name = r.cstr();
      const typeOid = r.u32();
      const typeMod = r.i32();
      columns.push({ name, typeOid, typeMod, isKey, type: columnType(typeOid, typeMod) });
    }
    const keyIndexes = columns.flatMap((c, i) => (c.isKey ? [i] : []));
    const relation: Relation = { oid, schema, table, replicaIdentity, columns, keyIndexes };
    const prior = this.relations.get(oid);
    // pgoutput resends Relation after DDL and on each new session; only a real change of shape is a schema change.
    const changed = !prior || !sameShape(prior.relation, relation);
    const kept = changed ? relation : prior.relation;
    const ints = Uint8Array.from(kept.columns, ({ type: { kind, isArray } }) => (isArray ? 0
      : kind === 'int16' || kind === 'int32' ? 1 : kind === 'int64' ? 2 : kind === 'timestamp' || kind === 'timestamptz' ? 3 : 0));
    this.relations.set(oid, { relation: kept, parsers: kept.columns.map((c) => valueParser(c.type)), ints });
    this.sink.relation(kept, changed);
  }

  private tuple(r: Reader, e: RelationEntry): Row {
    const n = r.i16();
    const parsers = e.parsers;
    if (n !== parsers.length) throw new DecodeError(`tuple has ${n} columns, relation ${e.relation.table} has ${parsers.length}`);
    const row: Row = new Array(n);
    const buf = r.buf;
    const ints = e.ints;
    for (let i = 0; i < n; i++) {
      const kind = buf[r.pos++];
      if (kind === 0x74) { // 't' text
        const len = buf.readInt32BE(r.pos);
        const start = r.pos + 4;
        const end = start + len;
        r.pos = end;
        const int = ints[i];
        if (int === 3) {
          const ts = timestampAt(buf, start, end);
          if (ts !== null) { row[i] = ts; continue; }
        } else if (int !== 0) {
          const v = smallIntAt(buf, start, end);
          if (v === v) { row[i] = int === 2 ? BigInt(v) : v; continue; }
        }
        row[i] = parsers[i]!(buf.toString('utf8', start, end));
      } else if (kind === 0x6e) row[i] = null; // 'n'
      else if (kind === 0x75) row[i] = UNAVAILABLE; // 'u' unchanged TOAST
      else throw new DecodeError(`unsupported tuple column kind 0x${(kind ?? 0).toString(16)}`);
    }
    return row;
  }
}
