import { CdcError } from '../errors.ts';
import type { ChangeEvent } from '../source/change-event.ts';
import { keyRow, validateChangeEvent } from '../source/change-event.ts';
import { formatLsn } from '../source/lsn.ts';
import { Unavailable } from '../source/pg-values.ts';
import { AvroWriter } from './avro-writer.ts';
import { WallClock } from './clock.ts';
import { EnvelopeWriter } from './envelope-writer.ts';
import type { SourceInfo } from './relation-schema.ts';
import type { PreparedRelation } from './schema-manager.ts';

/**
 * ChangeEvent -> Kafka records (Confluent wire format). A delete is followed
 * by a tombstone (null value, same key) so compacted topics drop the key,
 * unless disabled. An event that fails validation or encoding becomes a
 * dead-letter record instead: it is never dropped, and the slot still only
 * moves once that record is acknowledged.
 */
export interface EncodedRecord {
  topic: string;
  key: Buffer | null;
  value: Buffer | null;
  headers?: Record<string, string>;
}

export interface EncodeResult {
  records: EncodedRecord[];
  /** Set when the event went to the dead-letter topic. */
  error?: CdcError | Error;
}

function eventJson(ev: ChangeEvent): string {
  return JSON.stringify(
    { ...ev, relation: { schema: ev.relation.schema, table: ev.relation.table, columns: ev.relation.columns.map((c) => c.name) } },
    (_k, v) => (typeof v === 'bigint' ? v.toString() : v instanceof Unavailable ? '__debezium_unavailable_value' : v?.type === 'Buffer' ? `\\x${Buffer.from(v.data).toString('hex')}` : v),
  );
}

function sameValue(a: unknown, b: unknown): boolean {
  if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) return a.equals(b);
  return a === b;
}

/**
 * An unchanged TOASTed column arrives as a marker; under REPLICA IDENTITY
 * FULL the old tuple holds its value (Postgres detoasts it into the WAL), so
 * `after` takes it from there, as Debezium does. Only where no image holds
 * it does the placeholder remain (docs/encodings.md).
 */
export function fillUnchangedToast(ev: ChangeEvent): ChangeEvent {
  if (ev.kind !== 'update' || !ev.before || ev.beforeKeyOnly || !ev.after.some((v) => v instanceof Unavailable)) return ev;
  const before = ev.before;
  return { ...ev, after: ev.after.map((v, i) => (v instanceof Unavailable && before[i] !== undefined && !(before[i] instanceof Unavailable) ? before[i]! : v)) };
}

function keyChanged(before: readonly unknown[], after: readonly unknown[], keyIndexes: number[]): boolean {
  return keyIndexes.some((i) => !sameValue(before[i], after[i]));
}

export class EventEncoder {
  private readonly w = new AvroWriter(1024 * 1024);
  private readonly clock = new WallClock();
  private readonly envelope: EnvelopeWriter;

  constructor(source: SourceInfo, private readonly tombstones: boolean) {
    this.envelope = new EnvelopeWriter(source);
  }

  encode(event: ChangeEvent, prepared: PreparedRelation): EncodeResult {
    const ev = fillUnchangedToast(event);
    // A primary-key change is, per key, the end of one record and the start of
    // another: Debezium emits a delete (+ tombstone) for the old key and a
    // create for the new one, so compacted topics and per-key consumers stay right.
    if (ev.kind === 'update' && ev.before && keyChanged(ev.before, ev.after, ev.relation.keyIndexes)) {
      const del = this.encode({ ...ev, kind: 'delete', before: ev.before, beforeKeyOnly: ev.beforeKeyOnly }, prepared);
      const ins = this.encode({ ...ev, kind: 'insert', after: ev.after }, prepared);
      return { records: [...del.records, ...ins.records], error: del.error ?? ins.error };
    }
    const topic = prepared.schemas.topic;
    try {
      validateChangeEvent(ev);
      const w = this.w;
      const row = keyRow(ev);
      let key: Buffer | null = ev.kind === 'truncate' ? prepared.truncateKey ?? null : null;
      if (row) {
        w.reset();
        w.raw(prepared.keyHeader);
        prepared.schemas.writeKey(w, row);
        key = w.copyFrom(0);
      }
      w.reset();
      w.raw(prepared.valueHeader);
      const clock = this.clock;
      clock.read();
      this.envelope.write(w, ev, prepared.schemas, clock.us, clock.subUsNs);
      const records: EncodedRecord[] = [{ topic, key, value: w.copyFrom(0) }];
      if (ev.kind === 'delete' && this.tombstones) records.push({ topic, key, value: null });
      return { records };
    } catch (err) {
      const e = err as Error;
      return {
        error: e,
        records: [{
          topic: `${topic}.dlq`, key: null, value: Buffer.from(eventJson(ev)),
          headers: {
            'dlq.error': e.message.slice(0, 2000),
            'dlq.error.code': err instanceof CdcError ? err.code : 'ENCODE_FAILED',
            'dlq.source.topic': topic,
            'dlq.source.lsn': formatLsn(ev.lsn),
            'dlq.source.txId': String(ev.txId),
          },
        }],
      };
    }
  }
}
