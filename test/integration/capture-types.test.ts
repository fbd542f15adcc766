import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { consumeUntil, createHarness, startInProcess, type Harness } from '../../bench/capture/harness.ts';
import type { CaptureService } from '../../src/source/capture.ts';
import { uniqueId } from '../helpers/stack-env.ts';

/**
 * Every demo type plus json/jsonb, arrays, uuid, bytea and a TOASTed text
 * travel source -> slot -> Kafka (Avro via the registry) and decode to the
 * right values with the registry's own client.
 */
const dec = (b: Buffer, scale: number) => {
  let n = 0n;
  for (const x of b) n = (n << 8n) | BigInt(x);
  if (b.length && b[0]! & 0x80) n -= 1n << BigInt(8 * b.length);
  const s = (n < 0n ? -n : n).toString().padStart(scale + 1, '0');
  return `${n < 0n ? '-' : ''}${s.slice(0, -scale)}.${s.slice(-scale)}`;
};

describe('capture: types', () => {
  let h: Harness;
  let cap: CaptureService;
  const big = Array.from({ length: 3000 }, (_, i) => String.fromCharCode(33 + ((i * 7919) % 90))).join('') + 'x'.repeat(2000);

  beforeAll(async () => {
    h = await createHarness(uniqueId('cap_types'));
    const s = h.id;
    await h.pool.query(`CREATE TABLE ${s}.type_zoo (
      id bigint PRIMARY KEY, s smallint, i int, b bool, f4 real, f8 float8, n numeric, d date, ts timestamp, tstz timestamptz,
      j json, jb jsonb, u uuid, raw bytea, tags text[], nums int[], big text)`);
    await h.pool.query(`ALTER TABLE ${s}.type_zoo ALTER COLUMN big SET STORAGE EXTERNAL`);
    await h.pool.query(`ALTER PUBLICATION ${s} ADD TABLE ${s}.type_zoo`);
    cap = await startInProcess(h.config({ CAPTURE_SNAPSHOT: 'never' }));
  });
  afterAll(async () => {
    await cap?.stop();
    await h?.cleanup();
  });

  it('decodes demo columns, extra types and unchanged TOAST exactly', async () => {
    const s = h.id;
    await h.pool.query(`INSERT INTO ${s}.customers (customer_id, email, first_name, last_name, customer_segment) VALUES (1, 'A@x.io ', 'Ann', 'Lee', 'gold')`);
    await h.pool.query(`INSERT INTO ${s}.products VALUES (10, 'Mug', 'home', 12.50, NULL, now()), (11, 'Pen', 'office', 0.99, 4.75, now())`);
    await h.pool.query(`INSERT INTO ${s}.orders VALUES (100, 1, '2024-03-05 10:11:12.123456+00', 'placed', now())`);
    await h.pool.query(`INSERT INTO ${s}.order_items VALUES (100, 10, 3, 12.50, 0.15)`);
    await h.pool.query(`INSERT INTO ${s}.type_zoo VALUES (9007199254740993, -32768, 2147483647, true, 1.5, -2.25e-300, -12345678901234567890.123,
      '2024-02-29', '2024-03-05 10:11:12.000001', '1999-12-31 23:59:59.999999-05', '{"a": [1, 2]}', '{"b": {"c": null}}',
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff10', '{"x", NULL, "y z"}', '{1,2,3}', $1)`, [big]);
    await h.pool.query(`UPDATE ${s}.type_zoo SET i = 1 WHERE id = 9007199254740993`);
    const { rows: [ts] } = await h.pool.query(`SELECT to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS u FROM ${s}.customers`);

    const msgs = await consumeUntil(['customers', 'products', 'orders', 'order_items', 'type_zoo'].map(h.topic), (all) => all.length >= 7, 60_000);
    const by = (t: string) => msgs.filter((m) => m.topic === h.topic(t));

    const [cust] = by('customers');
    expect(cust!.key).toEqual({ customer_id: 1n });
    expect(cust!.value.op).toBe('c');
    expect(cust!.value.after).toMatchObject({ customer_id: 1n, email: 'A@x.io ', first_name: 'Ann', customer_segment: 'gold', updated_at: ts.u });
    expect(cust!.value.source).toMatchObject({ connector: 'postgresql', schema: s, table: 'customers', snapshot: 'false' });
    expect(cust!.value.transaction.total_order).toBe(1n);
    expect(typeof cust!.value.source.lsn).toBe('bigint');

    const prods = by('products');
    expect(prods.map((p) => p.value.transaction.total_order)).toEqual([1n, 2n]);
    expect(dec(prods[0]!.value.after.price, 2)).toBe('12.50');
    expect(prods[0]!.value.after.rating).toBeNull();
    expect(dec(prods[1]!.value.after.rating, 2)).toBe('4.75');
    expect(by('orders')[0]!.value.after.order_date).toBe('2024-03-05T10:11:12.123456Z');
    const item = by('order_items')[0]!;
    expect(item.key).toEqual({ order_id: 100n, product_id: 10n });
    expect(dec(item.value.after.discount, 2)).toBe('0.15');

    const zoo = by('type_zoo');
    expect(zoo.map((z) => z.value.op)).toEqual(['c', 'u']);
    const a = zoo[0]!.value.after;
    expect(a).toMatchObject({ s: -32768, i: 2147483647, b: true, f4: 1.5, f8: -2.25e-300, d: 19782, ts: 1709633472000001n, tstz: '2000-01-01T04:59:59.999999Z',
      j: '{"a": [1, 2]}', jb: '{"b": {"c": null}}', u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', tags: ['x', null, 'y z'], nums: [1, 2, 3], big });
    expect(a.raw).toEqual(Buffer.from([0, 255, 16]));
    expect(a.n.scale).toBe(3);
    expect(dec(a.n.value, 3)).toBe('-12345678901234567890.123');
    // the UPDATE did not touch `big`: Postgres did not send it, Debezium's placeholder stands in
    expect(zoo[1]!.value.after.big).toBe('__debezium_unavailable_value');
    expect(zoo[1]!.value.after.i).toBe(1);
    expect(zoo[0]!.key).toEqual({ id: 9007199254740993n });
  });
});
