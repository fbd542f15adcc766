import { readFileSync, writeFileSync } from 'node:fs';
import avro from 'avsc';
import { describe, expect, it } from 'vitest';
import { AvroWriter } from '../../src/publisher/avro-writer.ts';
import { formatZonedTimestamp, twosComplement, unscaled, UNAVAILABLE_PLACEHOLDER } from '../../src/publisher/debezium-types.ts';
import { buildRelationSchemas, SOURCE_SCHEMA } from '../../src/publisher/relation-schema.ts';
import type { ChangeEvent, Column, Relation } from '../../src/source/change-event.ts';
import { columnType, parseTimestamp, UNAVAILABLE } from '../../src/source/pg-values.ts';

// avsc's default long is a JS number; decode longs as bigint so the checks are exact.
const BigLong = avro.types.LongType.__with({
  fromBuffer: (b: Buffer) => b.readBigInt64LE(),
  toBuffer: (n: bigint) => { const b = Buffer.alloc(8); b.writeBigInt64LE(BigInt(n)); return b; },
  fromJSON: BigInt,
  toJSON: Number,
  isValid: (n: unknown) => typeof n === 'bigint',
  compare: (a: bigint, b: bigint) => (a === b ? 0 : a < b ? -1 : 1),
});
const parse = (schema: unknown) => avro.Type.forSchema(schema as avro.Schema, {
  registry: { long: BigLong } as never,
  // semantic longs ({type: 'long', connect.name: ...}) do not go through the registry
  typeHook: ((s: unknown) => (typeof s === 'object' && s !== null && (s as { type?: unknown }).type === 'long' ? BigLong : undefined)) as never,
});

const NUM = (p: number, s: number) => ((p << 16) | s) + 4;
function rel(table: string, cols: [string, number, number, boolean][]): Relation {
  const columns: Column[] = cols.map(([name, typeOid, typeMod, isKey]) => ({ name, typeOid, typeMod, isKey, type: columnType(typeOid, typeMod) }));
  return { oid: 1, schema: 'public', table, replicaIdentity: 'f', columns, keyIndexes: columns.flatMap((c, i) => (c.isKey ? [i] : [])) };
}

/** The demo tables of SPEC §1 as pgoutput describes them; nullable per migrations/source/0001. */
const DEMO: Record<string, [Relation, string[]]> = {
  customers: [rel('customers', [['customer_id', 20, -1, true], ['email', 25, -1, false], ['first_name', 25, -1, false], ['last_name', 25, -1, false], ['customer_segment', 25, -1, false], ['created_at', 1184, -1, false], ['updated_at', 1184, -1, false]]), []],
  products: [rel('products', [['product_id', 20, -1, true], ['product_name', 25, -1, false], ['category', 25, -1, false], ['price', 1700, NUM(10, 2), false], ['rating', 1700, NUM(3, 2), false], ['updated_at', 1184, -1, false]]), ['rating']],
  orders: [rel('orders', [['order_id', 20, -1, true], ['customer_id', 20, -1, false], ['order_date', 1184, -1, false], ['status', 25, -1, false], ['updated_at', 1184, -1, false]]), []],
  order_items: [rel('order_items', [['order_id', 20, -1, true], ['product_id', 20, -1, true], ['quantity', 23, -1, false], ['unit_price', 1700, NUM(10, 2), false], ['discount', 1700, NUM(4, 2), false]]), []],
};
const SRC = { version: '0.1.0', name: 'shop', db: 'shop' };

function event(r: Relation, partial: Partial<ChangeEvent> & Pick<ChangeEvent, 'kind'>): ChangeEvent {
  return { relation: r, lsn: 0x1_0000_0010n, commitLsn: 0x1_0000_0100n, lastCommitLsn: 0x1_0000_0008n, txId: 4242, commitTimeUs: 1709633472123456n, totalOrder: 3, tableOrder: 2, ...partial } as ChangeEvent;
}

describe('Debezium-compatible Avro schemas', () => {
  for (const [table, [r, nullable]] of Object.entries(DEMO)) {
    it(`generates the reference schemas for ${table}`, () => {
      const s = buildRelationSchemas(r, 'shop', (c) => nullable.includes(c));
      for (const [part, schema] of [['key', s.keySchema], ['value', s.valueSchema]] as const) {
        const path = `schemas/shop.public.${table}-${part}.avsc`;
        const text = `${JSON.stringify(schema, null, 2)}\n`;
        if (process.env.UPDATE_SCHEMAS === '1') writeFileSync(path, text);
        expect(text).toBe(readFileSync(path, 'utf8'));
        expect(() => parse(schema)).not.toThrow();
      }
    });
  }
  it('matches the reference Source record', () => {
    const text = `${JSON.stringify(SOURCE_SCHEMA, null, 2)}\n`;
    if (process.env.UPDATE_SCHEMAS === '1') writeFileSync('schemas/debezium-source.avsc', text);
    expect(text).toBe(readFileSync('schemas/debezium-source.avsc', 'utf8'));
  });
  it('clickstream schema is valid Avro named clickstream.events.Value', () => {
    const t = parse(JSON.parse(readFileSync('schemas/clickstream-event.avsc', 'utf8')));
    expect(t.name).toBe('clickstream.events.Value');
  });
});

describe('envelope encoding decodes with avsc', () => {
  it('update of a product: decimals, ZonedTimestamp, source, transaction block', () => {
    const [r] = DEMO.products!;
    const s = buildRelationSchemas(r, 'shop', (c) => c === 'rating');
    const ts = parseTimestamp('2024-03-05 10:11:12.000001+00');
    const ev = event(r, { kind: 'update', beforeKeyOnly: false, before: [7n, 'Mug', 'home', '12.50', null, ts], after: [7n, 'Mug', 'home', '-0.01', '4.25', ts] });
    const w = new AvroWriter(16);
    s.writeEnvelope(w, ev, SRC);
    const v = parse(s.valueSchema).fromBuffer(w.copyFrom(0)) as Record<string, any>;
    expect(v.op).toBe('u');
    expect(v.before.price).toEqual(twosComplement(1250n));
    expect(v.before.rating).toBeNull();
    expect(v.after.price).toEqual(Buffer.from([0xff]));
    expect(v.after.rating).toEqual(twosComplement(425n));
    expect(v.after.updated_at).toBe('2024-03-05T10:11:12.000001Z');
    expect(v.source).toMatchObject({ connector: 'postgresql', name: 'shop', db: 'shop', schema: 'public', table: 'products', snapshot: 'false', txId: 4242n, lsn: 0x1_0000_0010n, ts_ms: 1709633472123n, ts_us: 1709633472123456n });
    // Debezium: [last committed LSN (the previous transaction's end), this event's LSN]
    expect(v.source.sequence).toBe(`["${0x1_0000_0008n}","${0x1_0000_0010n}"]`);
    expect(v.transaction).toEqual({ id: `4242:${0x1_0000_0100n}`, total_order: 3n, data_collection_order: 2n });
    const k = new AvroWriter();
    s.writeKey(k, ev.kind === 'update' ? ev.after : []);
    expect(parse(s.keySchema).fromBuffer(k.copyFrom(0))).toEqual({ product_id: 7n });
  });

  it('all supported types, arrays, unavailable TOAST placeholder', () => {
    const r = rel('everything', [
      ['id', 20, -1, true], ['b', 16, -1, false], ['s', 21, -1, false], ['i', 23, -1, false], ['f4', 700, -1, false], ['f8', 701, -1, false],
      ['n', 1700, -1, false], ['d', 1082, -1, false], ['ts', 1114, -1, false], ['j', 3802, -1, false], ['u', 2950, -1, false], ['raw', 17, -1, false],
      ['tags', 1009, -1, false], ['nums', 1007, -1, false], ['big', 25, -1, false], ['blob', 17, -1, false],
    ]);
    const s = buildRelationSchemas(r, 'shop', () => true);
    const after = [9007199254740993n, true, -3, 2147483647, 1.5, -0.1, '-123.4500', 19782, -1n, '{"a": [1, 2]}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', Buffer.from([0, 1, 2]), ['x', null, 'y z'], [1, 2], UNAVAILABLE, UNAVAILABLE];
    const w = new AvroWriter();
    s.writeEnvelope(w, event(r, { kind: 'update', before: null, beforeKeyOnly: false, after }), SRC);
    const v = parse(s.valueSchema).fromBuffer(w.copyFrom(0)) as Record<string, any>;
    expect(v.before).toBeNull();
    expect(v.after.id).toBe(9007199254740993n);
    expect(v.after).toMatchObject({ b: true, s: -3, i: 2147483647, f4: 1.5, f8: -0.1, d: 19782, ts: -1n, j: '{"a": [1, 2]}', u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', tags: ['x', null, 'y z'], nums: [1, 2], big: UNAVAILABLE_PLACEHOLDER });
    expect(v.after.n).toEqual({ scale: 4, value: twosComplement(-1234500n) });
    expect(v.after.raw).toEqual(Buffer.from([0, 1, 2]));
    expect(v.after.blob).toEqual(Buffer.from(UNAVAILABLE_PLACEHOLDER));
  });

  it('refuses to write null into a NOT NULL field rather than dropping it', () => {
    const [r] = DEMO.customers!;
    const s = buildRelationSchemas(r, 'shop', () => false);
    const ev = event(r, { kind: 'insert', after: [1n, null, 'a', 'b', 'gold', 0n, 0n] });
    expect(() => s.writeEnvelope(new AvroWriter(), ev, SRC)).toThrow(/email is null/);
  });
});

describe('Debezium value helpers', () => {
  it('two\'s complement like BigInteger.toByteArray', () => {
    expect(twosComplement(0n)).toEqual(Buffer.from([0]));
    expect(twosComplement(127n)).toEqual(Buffer.from([0x7f]));
    expect(twosComplement(128n)).toEqual(Buffer.from([0x00, 0x80]));
    expect(twosComplement(-128n)).toEqual(Buffer.from([0x80]));
    expect(twosComplement(-129n)).toEqual(Buffer.from([0xff, 0x7f]));
  });
  it('unscaled decimals are exact or fail loudly', () => {
    expect(unscaled('12.5', 2)).toBe(1250n);
    expect(unscaled('-0.01', 2)).toBe(-1n);
    expect(() => unscaled('NaN', 2)).toThrow(/no Avro decimal/);
    expect(() => unscaled('1.234', 2)).toThrow(/more than 2/);
  });
  it('ZonedTimestamp always carries six fraction digits in UTC', () => {
    expect(formatZonedTimestamp(0n)).toBe('1970-01-01T00:00:00.000000Z');
    expect(formatZonedTimestamp(-1n)).toBe('1969-12-31T23:59:59.999999Z');
    expect(formatZonedTimestamp(parseTimestamp('2024-02-29 23:59:59.5-01'))).toBe('2024-03-01T00:59:59.500000Z');
  });
});

describe('AvroWriter 64-bit longs', () => {
  // Reference: the zig-zag varint written with BigInt arithmetic, 7 bits at a time.
  const reference = (v: bigint): Buffer => {
    let n = BigInt.asUintN(64, (v << 1n) ^ (v >> 63n));
    const out: number[] = [];
    while (n >= 128n) { out.push(Number(n & 127n) | 128); n >>= 7n; }
    out.push(Number(n));
    return Buffer.from(out);
  };
  const written = (f: (w: AvroWriter) => void) => { const w = new AvroWriter(16); f(w); return w.copyFrom(0); };
  const edges = [0n, 1n, -1n, 127n, 128n, 2n ** 52n - 1n, 2n ** 52n, -(2n ** 52n), 2n ** 53n + 7n, 1_764_633_600_123_456_789n,
    -1_764_633_600_123_456_789n, 2n ** 62n, 2n ** 63n - 1n, -(2n ** 63n), 4294967295n, 4294967296n, -4294967297n];

  it('writes bigint longs byte for byte as the BigInt reference', () => {
    for (const v of edges) expect(written((w) => w.long(v)).toString('hex'), String(v)).toBe(reference(v).toString('hex'));
    for (let i = 0; i < 2000; i++) {
      const v = BigInt.asIntN(64, (BigInt(Math.floor(Math.random() * 2 ** 32)) << 32n) | BigInt(Math.floor(Math.random() * 2 ** 32)));
      expect(written((w) => w.long(v)).toString('hex'), String(v)).toBe(reference(v).toString('hex'));
    }
  });

  it('scaledLong(us, 1000) is the nanosecond long, exact past 2^53', () => {
    for (const us of [0, 1, 999, 2 ** 32 - 1, 2 ** 32, 1_764_633_600_123_456, 9_007_199_254_740, 9_007_199_254_740_991]) {
      const ns = BigInt(us) * 1000n;
      if (ns >= 2n ** 63n) continue;
      expect(written((w) => w.scaledLong(us, 1000)).toString('hex'), String(us)).toBe(reference(ns).toString('hex'));
    }
    for (let i = 0; i < 2000; i++) {
      const us = Math.floor(Math.random() * 9_000_000_000_000_000);
      expect(written((w) => w.scaledLong(us, 1000)).toString('hex'), String(us)).toBe(reference(BigInt(us) * 1000n).toString('hex'));
    }
  });
});

describe('AvroWriter fast paths', () => {
  const written = (f: (w: AvroWriter) => void) => { const w = new AvroWriter(8); f(w); return w.copyFrom(0).toString('hex'); };
  const slowDecimal = (text: string, scale: number) => written((w) => w.bytes(twosComplement(unscaled(text, scale))));

  it('decimals: the double path writes what the BigInt path writes, and declines what it cannot do exactly', () => {
    const cases: [string, number][] = [['0', 2], ['-0.00', 2], ['0.99', 2], ['499.49', 2], ['-499.49', 2], ['127', 0], ['128', 0], ['-128', 0], ['-129', 0],
      ['32767', 0], ['-32768', 0], ['8388608', 0], ['999999999999999', 0], ['-999999999999.999', 3], ['1.5', 4], ['12', 3], ['0.05', 2]];
    for (let i = 0; i < 3000; i++) {
      const scale = Math.floor(Math.random() * 6);
      const int = String(Math.floor(Math.random() * 10 ** Math.floor(Math.random() * 10)));
      const fr = scale > 0 && Math.random() < 0.8 ? `.${String(Math.floor(Math.random() * 10 ** scale)).padStart(Math.ceil(Math.random() * scale), '0')}` : '';
      cases.push([`${Math.random() < 0.3 ? '-' : ''}${int}${fr}`, scale]);
    }
    for (const [text, scale] of cases) {
      let fast = '';
      const ok = (() => { const w = new AvroWriter(8); const r = w.decimal(text, scale); fast = w.copyFrom(0).toString('hex'); return r; })();
      if (ok) expect(fast, `${text} @${scale}`).toBe(slowDecimal(text, scale));
    }
    // declined: too many digits, too many fraction digits, not a plain decimal
    for (const [text, scale] of [['1234567890123456', 0], ['1.234', 2], ['NaN', 2], ['1e5', 0], ['', 0], ['-', 0], ['1.', 2], ['.5', 1], ['-.5', 1], ['1.2.3', 2]] as [string, number][]) {
      const w = new AvroWriter(8);
      expect(w.decimal(text, scale), text).toBe(false);
    }
  });

  it('strings: short ASCII, long and non-ASCII all carry the UTF-8 byte length', () => {
    for (const s of ['', 'a', 'customer42@example.com', 'x'.repeat(63), 'x'.repeat(64), 'x'.repeat(300), 'Zoë', 'naïve café ' + 'é'.repeat(40), '日本']) {
      const b = Buffer.from(s, 'utf8');
      const expected = written((w) => { w.long(b.length); w.raw(b); });
      expect(written((w) => w.string(s)), s).toBe(expected);
    }
  });
});
