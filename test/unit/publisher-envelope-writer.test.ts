import { describe, expect, it } from 'vitest';
import { AvroWriter, decimalLength } from '../../src/publisher/avro-writer.ts';
import { WallClock } from '../../src/publisher/clock.ts';
import { formatZonedTimestamp, writeZonedTimestamp } from '../../src/publisher/debezium-types.ts';
import { EnvelopeWriter } from '../../src/publisher/envelope-writer.ts';
import { buildRelationSchemas } from '../../src/publisher/relation-schema.ts';
import type { ChangeEvent, Column, Relation, Row, SnapshotMarker } from '../../src/source/change-event.ts';
import { columnType, TS_INFINITY, TS_MINUS_INFINITY, UNAVAILABLE } from '../../src/source/pg-values.ts';

/**
 * EnvelopeWriter (the capture's envelope path, with per-transaction parts
 * written once) against RelationSchemas.writeEnvelope (the generic writer the
 * schema tests decode with avsc): the same bytes for every event, whatever
 * the order of transactions, tables and kinds.
 */
let seed = 42;
const rnd = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;

const NUM = (p: number, s: number) => ((p << 16) | s) + 4;
function rel(oid: number, table: string, cols: [string, number, number, boolean][]): Relation {
  const columns: Column[] = cols.map(([name, typeOid, typeMod, isKey]) => ({ name, typeOid, typeMod, isKey, type: columnType(typeOid, typeMod) }));
  return { oid, schema: 'public', table, replicaIdentity: 'f', columns, keyIndexes: columns.flatMap((c, i) => (c.isKey ? [i] : [])) };
}
const items = rel(1, 'order_items', [['order_id', 20, -1, true], ['product_id', 20, -1, true], ['quantity', 23, -1, false], ['unit_price', 1700, NUM(10, 2), false], ['discount', 1700, NUM(4, 2), false]]);
const people = rel(2, 'pérsons', [['id', 20, -1, true], ['name', 25, -1, false], ['born', 1184, -1, false], ['score', 1700, -1, false], ['tags', 1009, -1, false], ['at', 1114, -1, false]]);
const schemasOf = new Map([items, people].map((r) => [r, buildRelationSchemas(r, 'shop', (c) => c !== 'order_id' && c !== 'product_id' && c !== 'id')]));

const BIG_LSNS = [0n, 1n, 127n, 128n, 0x1_0000_0010n, 9007199254740991n, 9007199254740992n, 9007199254740993n, (1n << 63n) - 1n, (1n << 64n) - 1n];
const TIMES = [0n, -1n, 1n, 1709633472123456n, -62135596800000000n, 4503599627370495n, 4503599627370496n, 9007199254740993n, 253402300799999999n, TS_INFINITY, TS_MINUS_INFINITY];
const NAMES = ['a', 'Łukasz Żółć', '日本語のテキスト', '😀 emoji', '', 'x'.repeat(63), 'y'.repeat(64), 'z'.repeat(300)];
const DECIMALS = ['0.00', '-0.01', '12.50', '99999999.99', '-99999999.99', '0.05'];

function row(r: Relation): Row {
  if (r === items) return [BigInt(Math.floor(rnd() * 1e6)), pick([1n, -1n, 9007199254740993n, -(1n << 63n)]), pick([0, 1, -1, 2147483647, -2147483648]), pick(DECIMALS), pick(['0.00', '0.15', '0.99'])];
  return [BigInt(Math.floor(rnd() * 1e9)), pick([...NAMES, null]), pick([...TIMES, null]), pick(['1', '-123.4500', '0.000001', '123456789012345678901234567890.5', 'NaN', null]), pick([['a', null, 'ü'], [], null]), pick([...TIMES, null])];
}

function randomEvent(tx: { txId: number; commitLsn: bigint; lastCommitLsn: bigint; commitTimeUs: bigint }, order: number): ChangeEvent {
  const relation = pick([items, people]);
  const pos = { ...tx, relation, lsn: pick([tx.commitLsn - 100n, ...BIG_LSNS]), totalOrder: order, tableOrder: Math.max(1, order - 1) };
  const kind = pick(['insert', 'update', 'update', 'delete', 'truncate', 'read'] as const);
  switch (kind) {
    case 'insert': return { ...pos, kind, after: row(relation) };
    case 'update': {
      const after = row(relation);
      if (relation === people && rnd() < 0.3) after[1] = UNAVAILABLE;
      return { ...pos, kind, before: rnd() < 0.3 ? null : row(relation), beforeKeyOnly: rnd() < 0.3, after };
    }
    case 'delete': return { ...pos, kind, before: row(relation), beforeKeyOnly: rnd() < 0.5 };
    case 'truncate': return { ...pos, kind };
    case 'read': return { ...pos, kind, after: row(relation), snapshot: pick(['first', 'true', 'last', 'incremental', 'first_in_data_collection', 'last_in_data_collection'] as SnapshotMarker[]) };
  }
}

const SRC = { version: '0.1.0', name: 'shop', db: 'shöp' };

describe('EnvelopeWriter', () => {
  it('writes the same bytes as the generic writeEnvelope, across transactions, tables, kinds and clock readings', () => {
    const fast = new EnvelopeWriter(SRC);
    const a = new AvroWriter(64);
    const b = new AvroWriter(64);
    let compared = 0;
    for (let t = 0; t < 400; t++) {
      // repeated transactions too: the parts cached for one must not leak into another that differs in one field
      const tx = {
        txId: pick([0, 1, 4242, 4294967295]), commitLsn: pick([...BIG_LSNS, 0x2_0000_0000n + BigInt(t)]),
        lastCommitLsn: pick([...BIG_LSNS, 0x1_0000_0000n + BigInt(t)]), commitTimeUs: pick(TIMES),
      };
      for (let i = 1; i <= 1 + Math.floor(rnd() * 12); i++) {
        const ev = randomEvent(tx, i);
        const schemas = schemasOf.get(ev.relation)!;
        const us = pick([0, 999, 1000, 1_764_679_200_123_456, 4_503_599_627_370, 4_503_599_627_371, 9_007_199_254_740, 9_007_199_254_740_991]);
        const sub = pick([0, 1, 500, 999]);
        a.reset();
        b.reset();
        let refError: unknown = null;
        let fastError: unknown = null;
        try { schemas.writeEnvelope(a, ev, SRC, BigInt(us) * 1000n + BigInt(sub)); } catch (err) { refError = err; }
        try { fast.write(b, ev, schemas, us, sub); } catch (err) { fastError = err; }
        expect(String(fastError)).toBe(String(refError));
        if (refError) continue;
        expect(b.copyFrom(0).toString('hex')).toBe(a.copyFrom(0).toString('hex'));
        compared++;
      }
    }
    expect(compared).toBeGreaterThan(1000);
  });
});

describe('AvroWriter number paths', () => {
  const viaBigint = (n: bigint) => { const w = new AvroWriter(16); w.long(n); return w.copyFrom(0).toString('hex'); };
  it('scaledLong(v, scale, add) writes v * scale + add exactly', () => {
    const vs = [0, 1, 999, 4_503_599_627, 4_503_599_627_370, 4_503_599_627_371, 1_764_679_200_123_456, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 12345, Number.MAX_SAFE_INTEGER];
    for (let i = 0; i < 2000; i++) vs.push(Math.floor(rnd() * Number.MAX_SAFE_INTEGER));
    for (const v of vs) {
      for (const add of [0, 1, 456, 999]) {
        const w = new AvroWriter(16);
        w.scaledLong(v, 1000, add);
        expect(w.copyFrom(0).toString('hex')).toBe(viaBigint(BigInt(v) * 1000n + BigInt(add)));
      }
    }
  });
  it('long(number) writes the zig-zag varint of the same value as a bigint', () => {
    const ns = [0, -0, 1, -1, 63, 64, -64, -65, 127, 128, 8191, 8192, 0x3fffffff, 0x40000000, -0x40000000, -0x40000001, 2 ** 31, -(2 ** 31), 2 ** 32, 2 ** 52 - 1, -(2 ** 52) + 1];
    for (let i = 0; i < 5000; i++) ns.push(Math.floor((rnd() - 0.5) * 2 ** Math.floor(rnd() * 53)));
    const viaBig = (n: bigint) => { const w = new AvroWriter(16); const u = BigInt.asUintN(64, (n << 1n) ^ (n >> 63n)); let x = u; const out: number[] = []; do { const b = Number(x & 127n); x >>= 7n; out.push(x > 0n ? b | 128 : b); } while (x > 0n); w.raw(Buffer.from(out)); return w.copyFrom(0).toString('hex'); };
    for (const n of ns) {
      const w = new AvroWriter(2);
      w.long(n);
      expect(w.copyFrom(0).toString('hex')).toBe(viaBig(BigInt(n)));
    }
  });
  it('asciiDigits / decimalLength match String(n)', () => {
    const ns = [0, 9, 10, 99, 100, 4294967296, Number.MAX_SAFE_INTEGER];
    for (let i = 0; i < 2000; i++) ns.push(Math.floor(rnd() * 10 ** Math.floor(rnd() * 16)));
    for (const n of ns) {
      const w = new AvroWriter(4);
      w.asciiDigits(n, decimalLength(n));
      expect(w.copyFrom(0).toString('latin1')).toBe(String(n));
    }
  });
});

describe('writeZonedTimestamp', () => {
  it('writes the bytes of w.string(formatZonedTimestamp(us)) for every instant', () => {
    const safe = BigInt(Number.MAX_SAFE_INTEGER);
    const us = [...TIMES, safe, -safe, safe + 1n, -safe - 1n, 86_400_000_000n, -86_400_000_000n, 946684800000000n, 951782399999999n];
    for (let i = 0; i < 5000; i++) us.push(BigInt(Math.floor((rnd() - 0.5) * 2 * Number.MAX_SAFE_INTEGER)));
    for (let i = 0; i < 500; i++) us.push(BigInt(Math.floor((rnd() - 0.3) * 1e6)) * 1_000_000_000n + BigInt(Math.floor(rnd() * 1e9)));
    for (const v of us) {
      const a = new AvroWriter(4);
      const b = new AvroWriter(4);
      a.string(formatZonedTimestamp(v));
      writeZonedTimestamp(b, v);
      expect(b.copyFrom(0).toString('hex')).toBe(a.copyFrom(0).toString('hex'));
    }
  });
});

describe('WallClock.read', () => {
  it('is nowNs() as two numbers, microseconds and the nanoseconds past them', () => {
    let hr = 7_000_000_000n;
    const c = new WallClock(() => 1_764_679_200_123, () => hr);
    for (const step of [0n, 1n, 999n, 1000n, 123_456_789n, 5n]) {
      hr += step;
      c.read();
      const ns = BigInt(c.us) * 1000n + BigInt(c.subUsNs);
      expect(c.subUsNs).toBeGreaterThanOrEqual(0);
      expect(c.subUsNs).toBeLessThan(1000);
      expect(ns).toBe(1_764_679_200_123n * 1_000_000n + (hr - 7_000_000_000n));
    }
  });
});
