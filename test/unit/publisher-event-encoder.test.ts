import { describe, expect, it } from 'vitest';
import { EventEncoder } from '../../src/publisher/event-encoder.ts';
import { buildRelationSchemas } from '../../src/publisher/relation-schema.ts';
import type { PreparedRelation } from '../../src/publisher/schema-manager.ts';
import type { ChangeEvent, Column, Relation } from '../../src/source/change-event.ts';
import { columnType } from '../../src/source/pg-values.ts';

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
});
