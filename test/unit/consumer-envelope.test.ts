import { describe, expect, it } from 'vitest';
import { decimalFromBytes, decimalToBytes } from '../../src/consumer/avro.ts';
import { UNAVAILABLE, validateEnvelope } from '../../src/consumer/envelope.ts';
import { ValidationError } from '../../src/errors.ts';
import { avroType, envelopeSchema, envelopeValue, type FixtureEvent } from '../helpers/debezium-fixtures.ts';

function roundTrip(ev: FixtureEvent): unknown {
  const type = avroType(envelopeSchema('shop', ev.table));
  return type.fromBuffer(type.toBuffer(envelopeValue(ev)));
}

const customer = {
  customer_id: 42, email: ' Ann@X.io ', first_name: 'Ann', last_name: 'Lee', customer_segment: 'gold',
  created_at: '2024-01-01T00:00:00.000001Z', updated_at: '2024-01-02T03:04:05.123456Z',
};

describe('decimal bytes', () => {
  it('round-trips exact values including negatives and carries', () => {
    for (const v of ['0.00', '10.50', '-0.01', '99999999.99', '-128.00', '1.28', '-1.29', '0.05']) {
      expect(decimalFromBytes(decimalToBytes(v, 2), 2)).toBe(v);
    }
    expect(decimalFromBytes(Buffer.from([0x04, 0x1a]), 2)).toBe('10.50');
    expect(decimalFromBytes(Buffer.from([0xff]), 2)).toBe('-0.01');
  });
});

describe('validateEnvelope', () => {
  it('decodes a Debezium customer insert with microseconds and bigint LSN', () => {
    const ch = validateEnvelope(roundTrip({ table: 'customers', op: 'c', after: customer, lsn: 2n ** 60n + 3n, commitTime: '2024-01-02T03:04:05.200001Z' }));
    expect(ch.op).toBe('c');
    expect(ch.lsn).toBe(2n ** 60n + 3n);
    expect(ch.commitUs).toBe(1704164645200001n);
    expect(ch.after).toMatchObject({ customer_id: '42', updated_at: '2024-01-02T03:04:05.123456Z', created_at: '2024-01-01T00:00:00.000001Z' });
  });

  it('decodes decimal money exactly and falls back to ts_ms when ts_us is absent', () => {
    const ch = validateEnvelope(roundTrip({
      table: 'order_items', op: 'u', lsn: 9n, commitTime: '2024-01-02T00:00:00.123456Z', omitTsUs: true,
      before: { order_id: 1, product_id: 2, quantity: 1, unit_price: '10.05', discount: '0.00' },
      after: { order_id: 1, product_id: 2, quantity: 3, unit_price: '19.99', discount: '0.15' },
    }));
    expect(ch.after).toEqual({ order_id: '1', product_id: '2', quantity: '3', unit_price: '19.99', discount: '0.15' });
    expect(ch.before?.unit_price).toBe('10.05');
    expect(ch.commitUs).toBe(1704153600123000n);
  });

  it('accepts a VariableScaleDecimal struct and decimal strings', () => {
    const raw = roundTrip({ table: 'products', op: 'c', lsn: 5n, commitTime: '2024-01-01T00:00:00Z', after: { product_id: 1, product_name: 'p', category: 'c', price: '1.00', rating: null, updated_at: '2024-01-01T00:00:00Z' } }) as { after: Record<string, unknown> };
    raw.after.price = { scale: 3, value: decimalToBytes('-12.345', 3) };
    raw.after.rating = '4.50';
    const ch = validateEnvelope(raw);
    expect(ch.after?.price).toBe('-12.345');
    expect(ch.after?.rating).toBe('4.50');
  });

  it('rejects binary-float money, missing lsn, unknown tables and deletes without before', () => {
    const base = roundTrip({ table: 'products', op: 'c', lsn: 5n, commitTime: '2024-01-01T00:00:00Z', after: { product_id: 1, product_name: 'p', category: 'c', price: '1.00', rating: null, updated_at: '2024-01-01T00:00:00Z' } }) as Record<string, any>;
    expect(() => validateEnvelope({ ...base, after: { ...base.after, price: 1.1 } })).toThrow(/binary float/);
    expect(() => validateEnvelope({ ...base, source: { ...base.source, lsn: null } })).toThrow(ValidationError);
    expect(() => validateEnvelope({ ...base, source: { ...base.source, table: 'secrets' } })).toThrow(/not a table/);
    expect(() => validateEnvelope({ ...base, op: 'd', before: null })).toThrow(/without before/);
    expect(() => validateEnvelope({ ...base, op: 'x' })).toThrow(/op must be/);
    expect(() => validateEnvelope({ ...base, after: { ...base.after, updated_at: 'yesterday' } })).toThrow(/ISO timestamp/);
  });

  it('fills unchanged TOASTed values from the before-image, else marks them unavailable', () => {
    const ev = roundTrip({ table: 'customers', op: 'u', lsn: 7n, commitTime: '2024-01-03T00:00:00Z', before: customer, after: { ...customer, email: UNAVAILABLE, first_name: UNAVAILABLE } }) as Record<string, any>;
    ev.before.first_name = UNAVAILABLE;
    const ch = validateEnvelope(ev);
    expect(ch.after?.email).toBe(' Ann@X.io ');
    expect(ch.unavailable).toEqual(['first_name']);
  });

  it('ignores columns it does not know (a compatible new source column) and nulls missing nullable ones', () => {
    const raw = roundTrip({ table: 'customers', op: 'r', after: customer, lsn: 3n, commitTime: '2024-01-02T00:00:00Z' }) as Record<string, any>;
    raw.after = { ...raw.after, loyalty_tier: 'x' };
    delete raw.after.created_at;
    const ch = validateEnvelope(raw);
    expect(ch.op).toBe('r');
    expect(ch.after).not.toHaveProperty('loyalty_tier');
    expect(ch.after?.created_at).toBeNull();
  });

  it('accepts truncates without images', () => {
    const ch = validateEnvelope(roundTrip({ table: 'orders', op: 't', lsn: 11n, commitTime: '2024-01-01T00:00:00Z' }));
    expect(ch).toMatchObject({ op: 't', table: 'orders', before: null, after: null, lsn: 11n });
  });
});
