import { describe, expect, it } from 'vitest';
import avro from 'avsc';
import { avroOptions } from '../../src/consumer/avro.ts';
import { loadWarehouseConsumerConfig } from '../../consumers/warehouse/config.ts';
import type { RowChange } from '../../src/consumer/envelope.ts';
import { ConfigError } from '../../src/errors.ts';
import { directKeys } from '../../consumers/warehouse/recompute.ts';

describe('loadWarehouseConsumerConfig', () => {
  it('derives the four topics from TOPIC_PREFIX and SOURCE_SCHEMA and applies the defaults', () => {
    const cfg = loadWarehouseConsumerConfig({ TOPIC_PREFIX: 'acme', SOURCE_SCHEMA: 'sales' });
    expect(cfg.topics).toEqual(['acme.sales.customers', 'acme.sales.products', 'acme.sales.orders', 'acme.sales.order_items']);
    expect(cfg.group).toBe('warehouse');
    expect(cfg.schemas).toEqual({ staging: 'staging', analytics: 'analytics', meta: 'cdc_meta' });
    expect(cfg.thresholds).toEqual({ valueHigh: '1000', valueMedium: '250', frequencyRepeat: 2, frequencyLoyal: 5 });
  });

  it('names the bad variable in one line', () => {
    expect(() => loadWarehouseConsumerConfig({ STAGING_SCHEMA: 'Robert"; DROP' })).toThrow(ConfigError);
    expect(() => loadWarehouseConsumerConfig({ STAGING_SCHEMA: 'Robert"; DROP' })).toThrow(/^STAGING_SCHEMA /);
    expect(() => loadWarehouseConsumerConfig({ CLV_VALUE_HIGH: '1e3' })).toThrow(/^CLV_VALUE_HIGH /);
    expect(() => loadWarehouseConsumerConfig({ CONSUMER_SESSION_TIMEOUT_MS: '1000' })).toThrow(/^CONSUMER_SESSION_TIMEOUT_MS /);
    expect(() => loadWarehouseConsumerConfig({ WAREHOUSE_DATABASE_URL: 'mysql://x' })).toThrow(/^WAREHOUSE_DATABASE_URL /);
  });
});

describe('decimal logical type', () => {
  it('takes the scale from connect.parameters when the Avro scale attribute is absent', () => {
    const t = avro.Type.forSchema({ type: 'bytes', logicalType: 'decimal', 'connect.parameters': { scale: '3' } } as unknown as avro.Schema, avroOptions());
    expect(t.fromBuffer(t.toBuffer('-1.234'))).toBe('-1.234');
    expect(t.fromBuffer(t.toBuffer('12'))).toBe('12.000');
    expect(() => t.toBuffer('0.0001')).toThrow(/more than 3 decimals/);
  });
});

describe('directKeys', () => {
  const ch = (table: RowChange['table'], before: Record<string, string> | null, after: Record<string, string> | null): RowChange =>
    ({ table, op: before && after ? 'u' : after ? 'c' : 'd', before, after, lsn: 1n, seq: 0n, commitUs: 0n, txId: null, unavailable: [] });

  it('collects old and new customers of an order, lines by their order only, products by their own changes', () => {
    const k = directKeys([
      ch('orders', { order_id: '1', customer_id: '7', order_date: '2024-01-01T00:00:00.000000Z' }, { order_id: '1', customer_id: '8', order_date: '2024-02-01T00:00:00.000000Z' }),
      ch('order_items', null, { order_id: '2', product_id: '50' }),
      ch('products', null, { product_id: '60' }),
      ch('customers', { customer_id: '9' }, null),
    ]);
    expect([...k.orders].sort()).toEqual(['1', '2']);
    expect([...k.customers].sort()).toEqual(['7', '8', '9']);
    expect([...k.historyCustomers]).toEqual(['9']);
    expect([...k.products]).toEqual(['60']);
    expect(k.orderDates).toEqual(['2024-01-01T00:00:00.000000Z', '2024-02-01T00:00:00.000000Z']);
  });
});
