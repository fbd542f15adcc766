import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadInputFormats } from '../../consumers/warehouse/config.ts';
import { CONTRACT_DECIMAL_SCALES, MessageDecoder } from '../../src/consumer/decode.ts';
import { validateEnvelope } from '../../src/consumer/envelope.ts';
import { decodeDebeziumJson, decodeDebeziumJsonKey } from '../../src/consumer/json-debezium.ts';
import { JsonNumber, parseJsonLossless } from '../../src/consumer/json-parse.ts';
import { ConfigError, DecodeError, ValidationError } from '../../src/errors.ts';
import { createRegistry } from '../../src/consumer/avro.ts';
import type { FixtureEvent } from '../helpers/debezium-fixtures.ts';
import { jsonEnvelope, jsonKey, jsonText, Raw } from '../helpers/debezium-json-fixtures.ts';

const opts = { decimalScales: CONTRACT_DECIMAL_SCALES };
const decode = (buf: Buffer) => validateEnvelope(decodeDebeziumJson(buf, opts));

/** Real Debezium 3.0.8 output (JsonConverter, schemas on and off) of test/integration/debezium-real.test.ts's workload. */
const REAL = readFileSync(fileURLToPath(new URL('./fixtures/debezium-3.0.8-json.jsonl', import.meta.url)), 'utf8')
  .trim().split('\n').map((l) => JSON.parse(l) as { topic: string; key: string; value: string });

// Every column type of migrations/source/0001_demo_schema.sql and 0002: bigint, text (null too: products.category), numeric(p,s) (null too), int, timestamptz.
const rows: FixtureEvent[] = [
  { table: 'customers', op: 'c', lsn: 2n ** 60n + 7n, commitTime: '2024-05-01T10:00:00.123456Z', txId: 2n ** 40n,
    after: { customer_id: 9007199254740993n, email: ' Ann@X.io', first_name: 'Ann', last_name: 'Lee "q" \\ ü', customer_segment: 'gold', created_at: '2024-01-01T00:00:00.000001Z', updated_at: '2024-05-01T10:00:00.123456Z' } },
  { table: 'products', op: 'u', lsn: 11n, commitTime: '2024-05-01T10:00:01Z',
    before: { product_id: 10, product_name: 'Book', category: 'books', price: '19.99', rating: null, updated_at: '2024-05-01T09:00:00Z' },
    after: { product_id: 10, product_name: 'Book', category: 'books', price: '99999999.99', rating: '4.50', updated_at: '2024-05-01T10:00:01.000000Z' } },
  { table: 'orders', op: 'd', lsn: 12n, commitTime: '2024-05-01T10:00:02Z',
    before: { order_id: 100, customer_id: 9007199254740993n, order_date: '2024-05-01T10:00:00.123456Z', status: 'cancelled', updated_at: '2024-05-01T10:00:02Z' } },
  { table: 'order_items', op: 'c', lsn: 13n, commitTime: '2024-05-01T10:00:03Z',
    after: { order_id: 100, product_id: 10, quantity: 2147483647, unit_price: '0.05', discount: '0.99' } },
  { table: 'order_items', op: 'r', lsn: 14n, commitTime: '2024-05-01T10:00:03Z',
    after: { order_id: 101, product_id: 11, quantity: 1, unit_price: '1234.50', discount: '0.00' } },
  { table: 'products', op: 'c', lsn: 15n, commitTime: '2024-05-01T10:00:04Z',
    after: { product_id: 12, product_name: 'Uncategorised', category: null, price: '0.00', rating: '5.00', updated_at: '2024-05-01T10:00:04Z' } },
];

describe('Debezium JSON (JsonConverter) → the validated envelope', () => {
  it('decodes every column type with and without schemas, equal to each other, int64 past 2^53 exact', () => {
    for (const ev of rows) {
      const on = decode(jsonEnvelope(ev, { schemas: true }));
      const off = decode(jsonEnvelope(ev, { schemas: false }));
      expect(off).toEqual(on);
      expect(on.op).toBe(ev.op);
      expect(on.lsn).toBe(ev.lsn);
      expect(on.table).toBe(ev.table);
    }
    const c = decode(jsonEnvelope(rows[0]!, { schemas: false }));
    expect(c.after).toEqual({ customer_id: '9007199254740993', email: ' Ann@X.io', first_name: 'Ann', last_name: 'Lee "q" \\ ü', customer_segment: 'gold', created_at: '2024-01-01T00:00:00.000001Z', updated_at: '2024-05-01T10:00:00.123456Z' });
    expect(c.txId).toBe(2n ** 40n);
    expect(c.commitUs).toBe(1714557600123456n);
    const p = decode(jsonEnvelope(rows[1]!, { schemas: true }));
    expect(p.before).toMatchObject({ price: '19.99', rating: null });
    expect(p.after).toMatchObject({ price: '99999999.99', rating: '4.50', updated_at: '2024-05-01T10:00:01.000000Z' });
    expect(decode(jsonEnvelope(rows[2]!, { schemas: true })).before).toMatchObject({ customer_id: '9007199254740993', status: 'cancelled' });
    expect(decode(jsonEnvelope(rows[3]!, { schemas: false })).after).toEqual({ order_id: '100', product_id: '10', quantity: '2147483647', unit_price: '0.05', discount: '0.99' });
    for (const schemas of [true, false]) {
      expect(decode(jsonEnvelope(rows[5]!, { schemas })).after).toEqual({ product_id: '12', product_name: 'Uncategorised', category: null, price: '0.00', rating: '5.00', updated_at: '2024-05-01T10:00:04.000000Z' });
    }
  });

  it('decodes the real connector output of every demo table and op, schemas on equal to schemas off', () => {
    const by = new Map<string, ReturnType<typeof decode>>();
    for (const m of REAL) {
      const ch = decode(Buffer.from(m.value));
      const side = m.topic.startsWith('dbzon.') ? 'on' : 'off';
      expect(ch.table).toBe(m.topic.split('.').at(-1));
      by.set(`${side}|${ch.lsn}|${ch.op}`, ch);
    }
    const lsns = [...by.keys()].filter((k) => k.startsWith('on|')).map((k) => k.slice(3));
    const both = lsns.filter((k) => by.has(`off|${k}`));
    expect(both.length).toBeGreaterThanOrEqual(4);
    for (const k of both) expect(by.get(`off|${k}`)).toEqual(by.get(`on|${k}`));
    const ops = new Set([...by.values()].map((c) => `${c.table}:${c.op}`));
    for (const t of ['customers', 'orders', 'order_items']) for (const op of ['c', 'u', 'd']) expect(ops.has(`${t}:${op}`), `${t}:${op}`).toBe(true);
    const big = [...by.values()].find((c) => c.after?.customer_id === '9007199254740993');
    expect(big?.after).toMatchObject({ email: 'big@x.io', customer_segment: 'gold' });
    const item = [...by.values()].find((c) => c.table === 'order_items' && c.op === 'c')!;
    expect(item.after!.unit_price).toMatch(/^\d+\.\d{2}$/);
    expect(item.after!.discount).toMatch(/^0\.\d{2}$/);
  });

  it('decodes keys with and without schema, real and generated', () => {
    for (const schemas of [true, false]) {
      expect(decodeDebeziumJsonKey(jsonKey('order_items', { order_id: 1, product_id: 2 }, { schemas }), 'order_items', opts)).toEqual({ order_id: 1n, product_id: 2n });
      expect(decodeDebeziumJsonKey(jsonKey('customers', { customer_id: 9007199254740993n }, { schemas }), 'customers', opts)).toEqual({ customer_id: 9007199254740993n });
    }
    const real = REAL.find((m) => m.key.includes('9007199254740993') && m.topic.startsWith('dbzon.'))!;
    expect(decodeDebeziumJsonKey(Buffer.from(real.key), 'customers', opts)).toEqual({ customer_id: 9007199254740993n });
  });

  it('reads decimal.handling.mode=string, and double only where the double provably holds the decimal', () => {
    for (const schemas of [true, false]) {
      expect(decode(jsonEnvelope(rows[1]!, { schemas, decimal: 'string' })).after).toMatchObject({ price: '99999999.99', rating: '4.50' });
      expect(decode(jsonEnvelope(rows[4]!, { schemas, decimal: 'double' })).after).toMatchObject({ unit_price: '1234.50', discount: '0.00' });
    }
    const item = (unit: string) => Buffer.from(jsonText({
      before: null, op: 'c', source: { table: 'order_items', lsn: 1n, ts_ms: 1n },
      after: { order_id: 1n, product_id: 2n, quantity: 1n, unit_price: new Raw(unit), discount: new Raw('0') },
    }));
    expect(decode(item('19.99')).after).toMatchObject({ unit_price: '19.99', discount: '0.00' });
    expect(decode(item('1.0E7')).after!.unit_price).toBe('10000000.00');
    expect(decode(item('1.5e-1')).after!.unit_price).toBe('0.15');
    // More decimals than the column's scale, or more digits than a double keeps: refused, never rounded.
    expect(() => decode(item('19.999'))).toThrow(/more than 2 decimals/);
    expect(() => decode(item('0.30000000000000004'))).toThrow(DecodeError);
    expect(() => decode(item('1234567890123456.5'))).toThrow(/significant digits/);
    // Without a configured scale a double cannot be placed.
    expect(() => validateEnvelope(decodeDebeziumJson(item('19.99'), { decimalScales: {} }))).toThrow(/CONSUMER_DECIMAL_SCALES/);
  });

  it('reads VariableScaleDecimal, JsonConverter decimal.format=NUMERIC and epoch timestamps named by the schema', () => {
    const schema = { type: 'struct', fields: [
      { type: 'struct', optional: true, field: 'after', fields: [
        { type: 'int64', field: 'order_id' }, { type: 'int64', field: 'customer_id' }, { type: 'string', field: 'status' },
        { type: 'int64', name: 'io.debezium.time.MicroTimestamp', field: 'order_date' },
        { type: 'int64', name: 'io.debezium.time.Timestamp', field: 'updated_at' },
      ] },
      { type: 'struct', field: 'source', fields: [{ type: 'string', field: 'table' }, { type: 'int64', field: 'lsn' }, { type: 'int64', field: 'ts_ms' }] },
      { type: 'string', field: 'op' },
    ] };
    const order = Buffer.from(jsonText({ schema, payload: {
      before: null, op: 'c', source: { table: 'orders', lsn: 5n, ts_ms: 1714557600123n },
      after: { order_id: 1n, customer_id: 2n, status: 'placed', order_date: 1714557600123456n, updated_at: 1714557600123n },
    } }));
    expect(decode(order).after).toMatchObject({ order_date: '2024-05-01T10:00:00.123456Z', updated_at: '2024-05-01T10:00:00.123000Z' });
    // Without a schema an epoch number has no unit: refused.
    const bare = Buffer.from(jsonText({ op: 'c', source: { table: 'orders', lsn: 5n, ts_ms: 1n }, after: { order_id: 1n, customer_id: 2n, status: 'placed', order_date: 1714557600123456n, updated_at: '2024-05-01T10:00:00Z' } }));
    expect(() => decode(bare)).toThrow(/epoch-number timestamp/);

    const vsd = Buffer.from(jsonText({ op: 'c', source: { table: 'products', lsn: 1n, ts_ms: 1n }, after: { product_id: 1n, product_name: 'x', category: 'y', price: { scale: 3n, value: Buffer.from([0xfb, 0x2e]).toString('base64') }, rating: null, updated_at: '2024-01-01T00:00:00Z' } }));
    expect(decode(vsd).after!.price).toBe('-1.234');
    const numeric = Buffer.from(jsonText({
      schema: { type: 'struct', fields: [{ type: 'struct', field: 'after', fields: [{ type: 'bytes', name: 'org.apache.kafka.connect.data.Decimal', parameters: { scale: '2' }, field: 'price' }] }] },
      payload: { op: 'c', source: { table: 'products', lsn: 1n, ts_ms: 1n }, after: { product_id: 1n, product_name: 'x', category: 'y', price: new Raw('12.5'), rating: null, updated_at: '2024-01-01T00:00:00Z' } },
    }));
    expect(decode(numeric).after!.price).toBe('12.50');
  });

  it('turns malformed JSON and wrong shapes into DecodeError or ValidationError (dead letters), never a half-decoded change', () => {
    const good = jsonEnvelope(rows[0]!, { schemas: false }).toString();
    for (const bad of [good.slice(0, -1), `${good}x`, good.replace('"op"', "'op'"), '{"before": nul', '{', '{"a":1,}', '{"a":01}', '\u00ff']) {
      expect(() => decodeDebeziumJson(Buffer.from(bad), opts), bad.slice(0, 40)).toThrow(DecodeError);
    }
    expect(() => decodeDebeziumJson(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]), opts)).toThrow(/UTF-8/);
    // Well-formed JSON that is not a valid envelope.
    expect(() => decode(Buffer.from('{"op":"c","source":{"table":"customers","lsn":1,"ts_ms":1},"after":{"customer_id":1.5}}'))).toThrow(DecodeError);
    expect(() => decode(Buffer.from('{"op":"x","source":{"table":"customers","lsn":1,"ts_ms":1}}'))).toThrow(ValidationError);
    expect(() => decode(Buffer.from(good.replace('"after":{', '"after":{"price":1,')))).not.toThrow(); // unknown columns are ignored
    const b64 = jsonEnvelope(rows[1]!, { schemas: false }).toString().replace(/"price":"[^"]+"/, '"price":"@@@@"');
    expect(() => decode(Buffer.from(b64))).toThrow(/base64/);
    // schemas.enable=true's null payload is a tombstone-like value: nothing to apply.
    expect(decodeDebeziumJson(Buffer.from('{"schema":null,"payload":null}'), opts)).toBeNull();
  });

  it('parses numbers losslessly', () => {
    const v = parseJsonLossless('{"a":[18446744073709551615,-0.5e-3,1E2],"b":"\\u00e9\\n"}') as { a: JsonNumber[]; b: string };
    expect(v.a.map((n) => n.raw)).toEqual(['18446744073709551615', '-0.5e-3', '1E2']);
    expect(v.a[0]!.toBigint()).toBe(18446744073709551615n);
    expect(v.b).toBe('é\n');
  });
});

describe('format selection', () => {
  const registry = createRegistry('http://127.0.0.1:1');
  it('detects JSON by its first byte, refuses bytes that are neither, and honours a forced format', async () => {
    const d = new MessageDecoder(registry, { format: 'auto', topics: { 'shop.public.orders': 'avro' }, decimalScales: CONTRACT_DECIMAL_SCALES });
    const json = jsonEnvelope(rows[3]!, { schemas: true });
    expect(validateEnvelope(await d.value('shop.public.order_items', Buffer.concat([Buffer.from(' \n'), json]))).lsn).toBe(13n);
    await expect(d.value('shop.public.order_items', Buffer.from('not json'))).rejects.toThrow(/neither Confluent Avro/);
    await expect(d.value('shop.public.orders', json)).rejects.toThrow(/magic byte 123/);
    const forcedJson = new MessageDecoder(registry, { format: 'json', topics: {}, decimalScales: {} });
    await expect(forcedJson.value('t', Buffer.from([0, 0, 0, 0, 1, 2]))).rejects.toThrow(DecodeError);
    expect(await d.key('shop.public.order_items', jsonKey('order_items', { order_id: 1, product_id: 2 }, { schemas: false }))).toEqual({ order_id: 1n, product_id: 2n });
  });

  it('reads CONSUMER_VALUE_FORMAT, per-topic overrides and decimal scales, naming a bad setting', () => {
    expect(loadInputFormats({})).toEqual({ format: 'auto', topics: {}, decimalScales: CONTRACT_DECIMAL_SCALES });
    expect(loadInputFormats({ CONSUMER_VALUE_FORMAT: 'json', CONSUMER_VALUE_FORMAT_TOPICS: 'a.b.c=avro, d.e.f=auto', CONSUMER_DECIMAL_SCALES: 'products.price=4' }))
      .toEqual({ format: 'json', topics: { 'a.b.c': 'avro', 'd.e.f': 'auto' }, decimalScales: { 'products.price': 4 } });
    expect(() => loadInputFormats({ CONSUMER_VALUE_FORMAT: 'protobuf' })).toThrow(/^CONSUMER_VALUE_FORMAT /);
    expect(() => loadInputFormats({ CONSUMER_VALUE_FORMAT_TOPICS: 'a=xml' })).toThrow(ConfigError);
    expect(() => loadInputFormats({ CONSUMER_DECIMAL_SCALES: 'products.category=2' })).toThrow(/^CONSUMER_DECIMAL_SCALES /);
  });
});
