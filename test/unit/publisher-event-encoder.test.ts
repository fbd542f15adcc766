import { describe, expect, it } from 'vitest';
import avro from 'avsc';
import { EventEncoder, fillUnchangedToast } from '../../src/publisher/event-encoder.ts';
import { WallClock } from '../../src/publisher/clock.ts';
import { avroOptions } from '../../src/consumer/avro.ts';
import { buildRelationSchemas } from '../../src/publisher/relation-schema.ts';
import type { PreparedRelation } from '../../src/publisher/schema-manager.ts';
import type { ChangeEvent, Column, Relation } from '../../src/source/change-event.ts';
import { columnType, UNAVAILABLE } from '../../src/source/pg-values.ts';

const cols: Column[] = [['id', 20, true], ['name', 25, false], ['price', 1700, false]].map(([name, oid, isKey]) => ({
  name: name as string, typeOid: oid as number, typeMod: oid === 1700 ? ((10 << 16) | 2) + 4 : -1, isKey: isKey as boolean, type: columnType(oid as number, oid === 1700 ? ((10 << 16) | 2) + 4 : -1),
}));
const rel: Relation = { oid: 1, schema: 'public', table: 'p', replicaIdentity: 'f', columns: cols, keyIndexes: [0] };
const schemas = buildRelationSchemas(rel, 'shop', (c) => c !== 'id');
const header = (id: number) => { const b = Buffer.alloc(5); b.writeInt32BE(id, 1); return b; };
const prepared: PreparedRelation = { schemas, keyId: 1, valueId: 2, keyHeader: header(1), valueHeader: header(2) };
const base = { relation: rel, lsn: 10n, commitLsn: 20n, lastCommitLsn: 8n, txId: 5, commitTimeUs: 1_700_000_000_000_000n, totalOrder: 1, tableOrder: 1 };
const enc = new EventEncoder({ version: 't', name: 'shop', db: 'shop' }, true);

describe('EventEncoder', () => {
  it('writes Confluent wire format key and value, and a tombstone after a delete', () => {
    const r = enc.encode({ ...base, kind: 'delete', before: [1n, 'a', '1.00'], beforeKeyOnly: false } as ChangeEvent, prepared);
    expect(r.error).toBeUndefined();
    expect(r.records.map((x) => x.topic)).toEqual(['shop.public.p', 'shop.public.p']);
    expect(r.records[0]!.key!.subarray(0, 5)).toEqual(header(1));
    expect(r.records[0]!.value!.subarray(0, 5)).toEqual(header(2));
    expect(r.records[1]!.value).toBeNull();
    expect(r.records[1]!.key).toEqual(r.records[0]!.key);
    const noTomb = new EventEncoder({ version: 't', name: 'shop', db: 'shop' }, false);
    expect(noTomb.encode({ ...base, kind: 'delete', before: [1n, 'a', '1.00'], beforeKeyOnly: false } as ChangeEvent, prepared).records).toHaveLength(1);
  });

  it('turns a primary-key change into delete + tombstone (old key) and create (new key)', () => {
    const r = enc.encode({ ...base, kind: 'update', before: [1n, 'a', '1.00'], beforeKeyOnly: false, after: [2n, 'a', '1.00'] } as ChangeEvent, prepared);
    expect(r.records).toHaveLength(3);
    expect(r.records[1]!.value).toBeNull();
    expect(r.records[0]!.key).toEqual(r.records[1]!.key);
    expect(r.records[2]!.key).not.toEqual(r.records[0]!.key);
  });

  it('sends an unencodable event to the dead-letter topic with its error and position', () => {
    const r = enc.encode({ ...base, kind: 'insert', after: [1n, 'a', 'NaN'] } as ChangeEvent, prepared);
    expect(r.error).toBeDefined();
    expect(r.records).toHaveLength(1);
    const dlq = r.records[0]!;
    expect(dlq.topic).toBe('shop.public.p.dlq');
    expect(dlq.headers).toMatchObject({ 'dlq.source.topic': 'shop.public.p', 'dlq.source.lsn': '0/A', 'dlq.source.txId': '5' });
    expect(dlq.headers!['dlq.error']).toMatch(/NaN/);
    expect(JSON.parse(dlq.value!.toString())).toMatchObject({ kind: 'insert', after: ['1', 'a', 'NaN'], relation: { table: 'p' } });
  });

  it('fills an unchanged TOASTed column from a full before image; keeps the placeholder where no image holds it', () => {
    const full = fillUnchangedToast({ ...base, kind: 'update', before: [1n, 'x'.repeat(3000), '1.00'], beforeKeyOnly: false, after: [1n, UNAVAILABLE, '2.00'] } as ChangeEvent);
    expect(full.kind === 'update' && full.after).toEqual([1n, 'x'.repeat(3000), '2.00']);
    const keyOnly = { ...base, kind: 'update', before: [1n, null, null], beforeKeyOnly: true, after: [1n, UNAVAILABLE, '2.00'] } as ChangeEvent;
    expect(fillUnchangedToast(keyOnly)).toBe(keyOnly);
    const noBefore = { ...base, kind: 'update', before: null, beforeKeyOnly: false, after: [1n, UNAVAILABLE, '2.00'] } as ChangeEvent;
    expect(fillUnchangedToast(noBefore)).toBe(noBefore);
    // Encoded: the value, not the placeholder.
    const type = avro.Type.forSchema(schemas.valueSchema as avro.Schema, avroOptions());
    const r = enc.encode({ ...base, kind: 'update', before: [1n, 'big', '1.00'], beforeKeyOnly: false, after: [1n, UNAVAILABLE, '2.00'] } as ChangeEvent, prepared);
    const v = type.fromBuffer(r.records[0]!.value!.subarray(5)) as { after: { name: string } };
    expect(v.after.name).toBe('big');
    const ph = enc.encode(noBefore, prepared);
    expect((type.fromBuffer(ph.records[0]!.value!.subarray(5)) as { after: { name: string } }).after.name).toBe('__debezium_unavailable_value');
  });

  it('writes real µs and ns: source ts_ns = commit µs × 1000, envelope times with sub-millisecond digits', () => {
    const type = avro.Type.forSchema(schemas.valueSchema as avro.Schema, avroOptions());
    const us = 1_700_000_000_123_457n;
    const seen: bigint[] = [];
    for (let i = 0; i < 20; i++) {
      const r = enc.encode({ ...base, commitTimeUs: us, kind: 'insert', after: [1n, 'a', '1.00'] } as ChangeEvent, prepared);
      const v = type.fromBuffer(r.records[0]!.value!.subarray(5)) as { source: Record<string, bigint>; ts_ms: bigint; ts_us: bigint; ts_ns: bigint };
      expect(v.source).toMatchObject({ ts_ms: 1_700_000_000_123n, ts_us: us, ts_ns: us * 1000n });
      expect(v.ts_us / 1000n).toBe(v.ts_ms);
      expect(v.ts_ns / 1000n).toBe(v.ts_us);
      seen.push(v.ts_us);
    }
    expect(seen.some((x) => x % 1000n !== 0n)).toBe(true);
  });
});

describe('WallClock', () => {
  it('adds monotonic nanoseconds to the wall-clock millisecond, never goes backwards, re-anchors after a second', () => {
    let wall = 1_000;
    let hr = 5_000_000_000n;
    const c = new WallClock(() => wall, () => hr);
    hr += 123_456n;
    expect(c.nowNs()).toBe(1_000_000_000n + 123_456n);
    hr += 2_000_000_000n; // > 1 s: re-anchor on the wall clock, which an NTP step set back
    wall = 900;
    expect(c.nowNs()).toBe(1_000_000_000n + 123_456n); // held, not backwards
    hr += 2_000_000_000n;
    wall = 3_100;
    expect(c.nowNs()).toBe(3_100_000_000n);
    hr += 500n;
    expect(c.nowNs()).toBe(3_100_000_500n);
  });
});

