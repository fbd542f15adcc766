import { OP_CODE, type ChangeEvent, type ChangeKind } from '../source/change-event.ts';
import { AvroWriter, decimalLength } from './avro-writer.ts';
import { CONNECTOR, type RelationSchemas, type SourceInfo } from './relation-schema.ts';

/**
 * Writes an event's Envelope record to the same bytes as
 * RelationSchemas.writeEnvelope (the reference; the unit tests compare the
 * two on many events), for the capture's hot path. Most of an envelope does
 * not change within a transaction: the source block's version, connector,
 * name, ts_ms, snapshot and db, the sequence's first LSN, ts_us, ts_ns,
 * txId, and the transaction id; schema and table only change with the table.
 * Those parts are written once per transaction (and table) and copied from
 * then on; what is left per event is the before/after images, the LSN (in
 * `sequence` and `lsn`), the transaction orders and the processing time,
 * written from numbers where they are exact (LSNs below 2^53).
 */
interface TxParts {
  txId: number;
  commitLsn: bigint;
  lastCommitLsn: bigint;
  commitTimeUs: bigint;
  /** 'false', or the snapshot marker of a read. */
  snapshot: string;
  /** source.version .. source.db, then the sequence's union branch. */
  head: Buffer;
  /** '["<lastCommitLsn>","' of the sequence string (ASCII). */
  seqPrefix: Buffer;
  /** Characters of the sequence string besides the event's LSN digits. */
  seqFixed: number;
  /** Per table: source ts_us, ts_ns, schema, table, txId, and the lsn's union branch. */
  mids: Map<RelationSchemas, Buffer>;
  /** source.xmin (null), then the transaction block up to its orders (null for reads). */
  tail: Buffer;
}

/** LSNs up to here are written from a number: exact, and far beyond any real WAL position (8 PiB). */
const SAFE_LSN = BigInt(Number.MAX_SAFE_INTEGER);

const OP_BYTES = Object.fromEntries((Object.keys(OP_CODE) as ChangeKind[]).map((k) => {
  const w = new AvroWriter(8);
  w.string(OP_CODE[k]);
  return [k, w.copyFrom(0)];
})) as Record<ChangeKind, Buffer>;

export class EnvelopeWriter {
  private readonly scratch = new AvroWriter(256);
  /** The current transaction's parts for its streamed changes, and for reads (snapshot rows) apart. */
  private parts: TxParts | null = null;
  private readParts: TxParts | null = null;

  constructor(private readonly src: SourceInfo) {}

  /** `nowUs` / `nowSubUsNs`: the processing time (a WallClock reading). */
  write(w: AvroWriter, ev: ChangeEvent, schemas: RelationSchemas, nowUs: number, nowSubUsNs: number): void {
    const kind = ev.kind;
    const before = kind === 'update' || kind === 'delete' ? ev.before : null;
    const after = kind === 'insert' || kind === 'update' || kind === 'read' ? ev.after : null;
    if (before) { w.long(1); schemas.writeValue(w, before, (kind === 'update' || kind === 'delete') && ev.beforeKeyOnly); } else w.long(0);
    if (after) { w.long(1); schemas.writeValue(w, after, false); } else w.long(0);
    const p = this.partsFor(ev);
    w.raw(p.head);
    const lsn = ev.lsn;
    const small = lsn >= 0n && lsn <= SAFE_LSN;
    const lsnN = small ? Number(lsn) : 0;
    if (small) {
      const digits = decimalLength(lsnN);
      w.long(p.seqFixed + digits);
      w.raw(p.seqPrefix);
      w.asciiDigits(lsnN, digits);
      w.byte(0x22); // "
      w.byte(0x5d); // ]
    } else {
      w.string(`["${ev.lastCommitLsn}","${lsn}"]`);
    }
    let mid = p.mids.get(schemas);
    if (!mid) p.mids.set(schemas, (mid = this.mid(ev, schemas)));
    w.raw(mid);
    if (small) w.long(lsnN);
    else w.long(lsn);
    w.raw(p.tail);
    if (kind !== 'read') { w.long(ev.totalOrder); w.long(ev.tableOrder); }
    w.raw(OP_BYTES[kind]);
    w.long(1); w.long(Math.floor(nowUs / 1000));
    w.long(1); w.long(nowUs);
    w.long(1); w.scaledLong(nowUs, 1000, nowSubUsNs);
  }

  private partsFor(ev: ChangeEvent): TxParts {
    const read = ev.kind === 'read';
    const snapshot = read ? ev.snapshot : 'false';
    const p = read ? this.readParts : this.parts;
    if (p && p.txId === ev.txId && p.commitLsn === ev.commitLsn && p.lastCommitLsn === ev.lastCommitLsn && p.commitTimeUs === ev.commitTimeUs && p.snapshot === snapshot) return p;
    const next = this.build(ev, snapshot);
    if (read) this.readParts = next;
    else this.parts = next;
    return next;
  }

  /** The per-transaction parts, written as RelationSchemas.writeEnvelope writes them. */
  private build(ev: ChangeEvent, snapshot: string): TxParts {
    const w = this.scratch;
    const src = this.src;
    w.reset();
    w.string(src.version); w.string(CONNECTOR); w.string(src.name); w.long(ev.commitTimeUs / 1000n);
    w.long(0); w.string(snapshot);
    w.string(src.db);
    w.long(1);
    const head = w.copyFrom(0);
    const prefix = `["${ev.lastCommitLsn}","`;
    w.reset();
    w.long(0);
    if (ev.kind === 'read') w.long(0);
    else { w.long(1); w.string(`${ev.txId}:${ev.commitLsn}`); }
    const tail = w.copyFrom(0);
    return {
      txId: ev.txId, commitLsn: ev.commitLsn, lastCommitLsn: ev.lastCommitLsn, commitTimeUs: ev.commitTimeUs, snapshot,
      head, seqPrefix: Buffer.from(prefix, 'latin1'), seqFixed: prefix.length + 2, mids: new Map(), tail,
    };
  }

  private mid(ev: ChangeEvent, schemas: RelationSchemas): Buffer {
    const w = this.scratch;
    w.reset();
    // pgoutput's commit time is µs; Debezium's ts_ns is the same instant × 1000.
    w.long(1); w.long(ev.commitTimeUs);
    w.long(1);
    if (ev.commitTimeUs >= 0n) w.scaledLong(Number(ev.commitTimeUs), 1000);
    else w.long(ev.commitTimeUs * 1000n);
    w.string(schemas.relation.schema); w.string(schemas.relation.table);
    w.long(1); w.long(ev.txId);
    w.long(1);
    return w.copyFrom(0);
  }
}
