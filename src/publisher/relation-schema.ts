import type { ChangeEvent, Relation, Row } from '../source/change-event.ts';
import type { ColumnValue } from '../source/pg-values.ts';
import { OP_CODE } from '../source/change-event.ts';
import type { AvroWriter } from './avro-writer.ts';
import { columnCodec, EncodeError, type AvroSchema, type ColumnCodec } from './debezium-types.ts';

/**
 * Key, Value and Envelope schemas of one captured table, named as Debezium
 * names them (`<prefix>.<schema>.<table>.Key|Value|Envelope`), and the
 * encoders that write a ChangeEvent against them.
 */
export interface SourceInfo {
  /** Debezium's `source.version`: the producing software's version. */
  version: string;
  /** Logical server name (Debezium topic.prefix). */
  name: string;
  /** Source database name. */
  db: string;
}

export const CONNECTOR = 'postgresql';

export const SOURCE_SCHEMA = {
  type: 'record', name: 'Source', namespace: 'io.debezium.connector.postgresql',
  fields: [
    { name: 'version', type: 'string' },
    { name: 'connector', type: 'string' },
    { name: 'name', type: 'string' },
    { name: 'ts_ms', type: 'long' },
    {
      name: 'snapshot',
      type: [{
        type: 'string', 'connect.version': 1,
        'connect.parameters': { allowed: 'true,first,first_in_data_collection,last_in_data_collection,last,false,incremental' },
        'connect.default': 'false', 'connect.name': 'io.debezium.data.Enum',
      }, 'null'],
      default: 'false',
    },
    { name: 'db', type: 'string' },
    { name: 'sequence', type: ['null', 'string'], default: null },
    { name: 'ts_us', type: ['null', 'long'], default: null },
    { name: 'ts_ns', type: ['null', 'long'], default: null },
    { name: 'schema', type: 'string' },
    { name: 'table', type: 'string' },
    { name: 'txId', type: ['null', 'long'], default: null },
    { name: 'lsn', type: ['null', 'long'], default: null },
    { name: 'xmin', type: ['null', 'long'], default: null },
  ],
  'connect.name': 'io.debezium.connector.postgresql.Source',
} as const;

export const TRANSACTION_BLOCK_SCHEMA = {
  type: 'record', name: 'block', namespace: 'event',
  fields: [
    { name: 'id', type: 'string' },
    { name: 'total_order', type: 'long' },
    { name: 'data_collection_order', type: 'long' },
  ],
  'connect.version': 1, 'connect.name': 'event.block',
} as const;

/** Avro names allow [A-Za-z0-9_]; Debezium replaces anything else with '_'. */
export function avroName(s: string): string {
  const t = s.replace(/[^A-Za-z0-9_]/g, '_');
  return /^[A-Za-z_]/.test(t) ? t : `_${t}`;
}

export function topicFor(prefix: string, r: { schema: string; table: string }): string {
  return `${prefix}.${r.schema}.${r.table}`;
}

interface FieldPlan { index: number; name: string; optional: boolean; codec: ColumnCodec }

export interface RelationSchemas {
  relation: Relation;
  topic: string;
  keySchema: AvroSchema;
  valueSchema: AvroSchema;
  /** Writes the Key record for a row. */
  writeKey(w: AvroWriter, row: Row): void;
  /** Writes a Value record (the envelope's before or after image); `keyOnly`: non-key columns as null. */
  writeValue(w: AvroWriter, row: Row, keyOnly: boolean): void;
  /** Writes the Envelope record for an event. */
  /** `nowNs`: processing time for the envelope's ts_ms/ts_us/ts_ns (a WallClock reading; default Date.now()). */
  writeEnvelope(w: AvroWriter, ev: ChangeEvent, src: SourceInfo, nowNs?: bigint): void;
}

/**
 * `optional(column)` says whether a column's field is nullable: nullable
 * columns, and columns added after the subject's first version (so the new
 * schema stays backward compatible), are `["null", T]` with default null.
 */
export function buildRelationSchemas(relation: Relation, prefix: string, optional: (columnName: string) => boolean): RelationSchemas {
  const ns = `${avroName(prefix)}.${avroName(relation.schema)}.${avroName(relation.table)}`;
  const topic = topicFor(prefix, relation);
  const seen = new Set<string>();
  const valuePlan: FieldPlan[] = relation.columns.map((c, index) => ({
    index, name: avroName(c.name), optional: !c.isKey && optional(c.name), codec: columnCodec(c, seen),
  }));
  const keySeen = new Set<string>();
  const keyPlan: FieldPlan[] = relation.keyIndexes.map((index) => ({
    index, name: avroName(relation.columns[index]!.name), optional: false, codec: columnCodec(relation.columns[index]!, keySeen),
  }));
  if (keyPlan.length === 0) {
    throw new EncodeError(`table ${relation.schema}.${relation.table} has no primary key / replica identity columns; it cannot be keyed`);
  }
  const field = (f: FieldPlan) => (f.optional ? { name: f.name, type: ['null', f.codec.type], default: null } : { name: f.name, type: f.codec.type });
  const keySchema = { type: 'record', name: 'Key', namespace: ns, fields: keyPlan.map(field), 'connect.name': `${ns}.Key` };
  const valueRecord = { type: 'record', name: 'Value', namespace: ns, fields: valuePlan.map(field), 'connect.name': `${ns}.Value` };
  const valueSchema = {
    type: 'record', name: 'Envelope', namespace: ns,
    fields: [
      { name: 'before', type: ['null', valueRecord], default: null },
      { name: 'after', type: ['null', `${ns}.Value`], default: null },
      { name: 'source', type: SOURCE_SCHEMA },
      { name: 'transaction', type: ['null', TRANSACTION_BLOCK_SCHEMA], default: null },
      { name: 'op', type: 'string' },
      { name: 'ts_ms', type: ['null', 'long'], default: null },
      { name: 'ts_us', type: ['null', 'long'], default: null },
      { name: 'ts_ns', type: ['null', 'long'], default: null },
    ],
    'connect.version': 1, 'connect.name': `${ns}.Envelope`,
  };

  const writeRecord = (plan: FieldPlan[], w: AvroWriter, row: Row, keyOnly: boolean) => {
    for (const f of plan) {
      let v = row[f.index] as ColumnValue;
      // A key-only before-image (replica identity default) sends null for non-key columns.
      if (keyOnly && !relation.columns[f.index]!.isKey) v = null;
      if (f.optional) {
        if (v === null) { w.long(0); continue; }
        w.long(1);
      } else if (v === null) {
        throw new EncodeError(`${topic}: column ${f.name} is null but declared NOT NULL`);
      }
      f.codec.write(w, v);
    }
  };

  return {
    relation, topic, keySchema, valueSchema,
    writeKey: (w, row) => writeRecord(keyPlan, w, row, false),
    writeValue: (w, row, keyOnly) => writeRecord(valuePlan, w, row, keyOnly),
    writeEnvelope(w, ev, src, now) {
      const before = ev.kind === 'update' || ev.kind === 'delete' ? ev.before : null;
      const after = ev.kind === 'insert' || ev.kind === 'update' || ev.kind === 'read' ? ev.after : null;
      const keyOnly = (ev.kind === 'update' || ev.kind === 'delete') && ev.beforeKeyOnly;
      if (before) { w.long(1); writeRecord(valuePlan, w, before, keyOnly); } else w.long(0);
      if (after) { w.long(1); writeRecord(valuePlan, w, after, false); } else w.long(0);
      // source
      const tsMs = ev.commitTimeUs / 1000n;
      w.string(src.version); w.string(CONNECTOR); w.string(src.name); w.long(tsMs);
      w.long(0); w.string(ev.kind === 'read' ? ev.snapshot : 'false');
      w.string(src.db);
      w.long(1); w.string(`["${ev.lastCommitLsn}","${ev.lsn}"]`);
      // pgoutput's commit time is µs; Debezium's ts_ns is the same instant × 1000.
      w.long(1); w.long(ev.commitTimeUs);
      w.long(1);
      if (ev.commitTimeUs >= 0n) w.scaledLong(Number(ev.commitTimeUs), 1000);
      else w.long(ev.commitTimeUs * 1000n);
      w.string(relation.schema); w.string(relation.table);
      w.long(1); w.long(ev.txId);
      w.long(1); w.long(ev.lsn);
      w.long(0);
      // transaction block: snapshot reads are not part of a source transaction
      if (ev.kind === 'read') w.long(0);
      else { w.long(1); w.string(`${ev.txId}:${ev.commitLsn}`); w.long(ev.totalOrder); w.long(ev.tableOrder); }
      w.string(OP_CODE[ev.kind]);
      const nowNs = now ?? BigInt(Date.now()) * 1_000_000n;
      const nowUs = Number(nowNs / 1000n);
      w.long(1); w.long(Math.floor(nowUs / 1000));
      w.long(1); w.long(nowUs);
      w.long(1); w.long(nowNs);
    },
  };
}
