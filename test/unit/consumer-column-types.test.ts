import { describe, expect, it } from 'vitest';
import { columnOf, extraColumnsOfSchema } from '../../src/consumer/column-types.ts';
import { validateEnvelope } from '../../src/consumer/envelope.ts';

describe('extra source columns: Avro/Debezium type → Postgres type and value', () => {
  const cases: Array<[unknown, string, unknown, string | null]> = [
    [['null', 'string'], 'text', 'gold', 'gold'],
    [['null', 'int'], 'int', 7, '7'],
    [{ type: 'int', 'connect.type': 'int16' }, 'smallint', -3, '-3'],
    [['null', 'long'], 'bigint', 12345678901234n, '12345678901234'],
    ['boolean', 'boolean', false, 'false'],
    ['double', 'double precision', 1.5, '1.5'],
    [{ type: 'bytes', logicalType: 'decimal', scale: 2, precision: 10 }, 'numeric', '12.30', '12.30'],
    [{ type: 'record', name: 'VariableScaleDecimal', 'connect.name': 'io.debezium.data.VariableScaleDecimal', fields: [] }, 'numeric', { scale: 2, value: Buffer.from([0x04, 0xd2]) }, '12.34'],
    [{ type: 'int', 'connect.name': 'io.debezium.time.Date' }, 'date', 19_844, '2024-05-01'],
    [{ type: 'long', 'connect.name': 'io.debezium.time.MicroTimestamp' }, 'timestamp', 1_714_557_600_123_456n, '2024-05-01 10:00:00.123456'],
    [{ type: 'long', 'connect.name': 'io.debezium.time.MicroTime' }, 'time', 3_723_000_001n, '01:02:03.000001'],
    [{ type: 'string', 'connect.name': 'io.debezium.time.ZonedTimestamp' }, 'timestamptz', '2024-05-01T10:00:00.5Z', '2024-05-01T10:00:00.500000Z'],
    [{ type: 'string', 'connect.name': 'io.debezium.data.Json' }, 'jsonb', '{"a":1}', '{"a":1}'],
    [{ type: 'string', 'connect.name': 'io.debezium.data.Uuid' }, 'uuid', '6f1c1d0e-0000-4000-8000-000000000000', '6f1c1d0e-0000-4000-8000-000000000000'],
    ['bytes', 'bytea', Buffer.from([1, 255]), '\\x01ff'],
    [['null', 'string'], 'text', null, null],
  ];
  for (const [avro, sqlType, value, text] of cases) {
    it(`${JSON.stringify(avro)} → ${sqlType}`, () => {
      const c = columnOf('x', avro);
      expect(c.sqlType).toBe(sqlType);
      expect(c.normalise(value)).toBe(text);
    });
  }

  it('an envelope carries the columns its table does not model, with their values; modelled ones stay as before', () => {
    const row = { type: 'record', name: 'Value', fields: [
      { name: 'product_id', type: 'long' }, { name: 'product_name', type: ['null', 'string'] }, { name: 'loyalty_tier', type: ['null', 'string'], default: null },
      { name: 'weight_g', type: ['null', 'int'], default: null }] };
    const columns = extraColumnsOfSchema({ type: 'record', name: 'Envelope', fields: [{ name: 'before', type: ['null', row] }, { name: 'after', type: ['null', 'Value'] }] });
    const ch = validateEnvelope({
      op: 'u', before: null, after: { product_id: 5n, product_name: 'Pen', loyalty_tier: 'gold', weight_g: 12 },
      source: { table: 'products', lsn: 100n, ts_ms: 1n },
    }, columns);
    expect(ch.extraColumns).toEqual({ loyalty_tier: 'text', weight_g: 'int' });
    expect(ch.after).toMatchObject({ product_id: '5', product_name: 'Pen', loyalty_tier: 'gold', weight_g: '12' });
    expect(validateEnvelope({ op: 'c', before: null, after: { product_id: 5n }, source: { table: 'products', lsn: 1n, ts_ms: 1n } }).extraColumns).toBeUndefined();
  });
});
