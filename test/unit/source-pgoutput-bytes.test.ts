import { describe, expect, it } from 'vitest';
import type { ChangeEvent } from '../../src/source/change-event.ts';
import { PgoutputDecoder, smallIntAt } from '../../src/source/pgoutput.ts';
import { columnType, parseScalar, parseTimestamp, timestampAt, valueParser } from '../../src/source/pg-values.ts';

/**
 * The decoder reads ints and timestamps straight from the tuple bytes; the
 * text parsers (parseScalar, parseTimestamp) are the reference. Every text
 * either gives the reference's value or falls back to it (NaN / null).
 */
let seed = 7;
const rnd = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
const at = (s: string) => { const b = Buffer.from(`xx${s}yy`); return [b, 2, 2 + Buffer.byteLength(s)] as const; };
const ref = <T>(fn: () => T): T | string => { try { return fn(); } catch (err) { return `error: ${(err as Error).message}`; } };

describe('smallIntAt', () => {
  const texts = ['0', '-0', '1', '-1', '7', '007', '2147483647', '-2147483648', '32767', '-32768', '123456789012345', '-123456789012345',
    '1234567890123456', '9007199254740993', '9223372036854775807', '-9223372036854775808', '', '-', '+5', ' 5', '5 ', '1e3', '1.5', '١٢'];
  for (let i = 0; i < 3000; i++) texts.push(String(Math.floor((rnd() - 0.5) * 10 ** Math.floor(rnd() * 19))));
  it('is Number(text) for up to 15 digits and NaN (fall back) otherwise', () => {
    for (const t of texts) {
      const v = smallIntAt(...at(t));
      if (Number.isNaN(v)) continue;
      expect(Object.is(v, parseScalar('int32', t))).toBe(true);
      expect(BigInt(v)).toBe(parseScalar('int64', t));
    }
    expect(smallIntAt(...at('123456789012345'))).toBe(123456789012345);
    expect(smallIntAt(...at('1234567890123456'))).toBeNaN();
    expect(smallIntAt(...at(''))).toBeNaN();
    expect(smallIntAt(...at('+5'))).toBeNaN();
  });
});

describe('timestampAt', () => {
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  const texts = ['2024-03-05 10:11:12.123456+00', '2024-03-05 15:41:12.123456+05:30', '2024-03-05 10:11:12', '2024-03-05 10:11:12.5', '2024-03-05T10:11:12.5Z',
    '0044-03-15 12:00:00+00 BC', '1969-12-31 23:59:59.999999+00', '1970-01-01 00:00:00+00', '0001-01-01 00:00:00+00', '9999-12-31 23:59:59.999999+00',
    '2255-06-05 23:47:34.740992+00', '2255-06-06 00:00:00+00', '1684-01-01 00:00:00-12', '12345-01-01 00:00:00+00', '2024-03-05 10:11:12.1234567+00',
    '2024-03-05 10:11:12+0530', '2024-03-05 10:11:12+05:30:15', '2024-03-05 10:11:12-03:30', '2024-03-05 10:11:12.+00', '2024-03-05 10:11:12+5',
    'infinity', '-infinity', '', '2024-03-05', '2024-13-45 25:61:61+00', '2024-03-05 10:11:12 +00', '2024-03-05 10:11:12.000000+00'];
  for (let i = 0; i < 5000; i++) {
    const frac = rnd() < 0.3 ? '' : `.${String(Math.floor(rnd() * 1e6)).padStart(6, '0').slice(0, 1 + Math.floor(rnd() * 6))}`;
    const off = rnd() < 0.2 ? '' : `${rnd() < 0.5 ? '+' : '-'}${pad(Math.floor(rnd() * 15))}${rnd() < 0.3 ? `:${pad(Math.floor(rnd() * 60))}` : ''}`;
    texts.push(`${pad(Math.floor(rnd() * 10000), 4)}-${pad(1 + Math.floor(rnd() * 12))}-${pad(1 + Math.floor(rnd() * 28))} ${pad(Math.floor(rnd() * 24))}:${pad(Math.floor(rnd() * 60))}:${pad(Math.floor(rnd() * 60))}${frac}${off}`);
  }
  it('is parseTimestamp(text) or null (fall back) for every text, and reads the common form itself', () => {
    let fast = 0;
    for (const t of texts) {
      const v = timestampAt(...at(t));
      if (v === null) continue;
      fast++;
      expect(v).toBe(ref(() => parseTimestamp(t)));
    }
    expect(fast).toBeGreaterThan(4000);
    expect(timestampAt(...at('2024-03-05 10:11:12.123456+00'))).toBe(1709633472123456n);
    expect(timestampAt(...at('9999-12-31 23:59:59.999999+00'))).toBe(253402300799999999n);
    for (const t of ['0044-03-15 12:00:00+00 BC', 'infinity', '12345-01-01 00:00:00+00', '2024-03-05 10:11:12+0530', '2024-03-05T10:11:12.5Z']) expect(timestampAt(...at(t))).toBeNull();
  });
});

describe('PgoutputDecoder with the byte readers', () => {
  it('decodes every column as the text parser of its type does', () => {
    const cols: [string, number][] = [['id', 20], ['s', 21], ['i', 23], ['ts', 1114], ['tz', 1184], ['ints', 1007], ['big', 1016], ['oid', 26], ['t', 25]];
    const rows = [
      ['1', '-32768', '2147483647', '2024-03-05 10:11:12.5', '2024-03-05 15:41:12.123456+05:30', '{1,NULL,-3}', '{9223372036854775807}', '4294967295', 'héllo'],
      ['9223372036854775807', '0', '-0', '0044-03-15 12:00:00 BC', 'infinity', '{}', '{1}', '0', ''],
      ['-9007199254740993', '7', '+5', '1969-12-31 23:59:59.999999', '-infinity', '{2}', '{-1}', '1', '12'],
    ];
    const parts: Buffer[] = [];
    const u8 = (v: number) => parts.push(Buffer.from([v]));
    const i16 = (v: number) => { const b = Buffer.alloc(2); b.writeInt16BE(v); parts.push(b); };
    const i32 = (v: number) => { const b = Buffer.alloc(4); b.writeInt32BE(v); parts.push(b); };
    const str = (v: string) => parts.push(Buffer.from(`${v}\0`));
    const take = () => { const b = Buffer.concat(parts); parts.length = 0; return b; };
    const events: ChangeEvent[] = [];
    const d = new PgoutputDecoder({ begin() {}, commit() {}, relation() {}, change: (e) => events.push(e), message() {} });
    u8(0x42); parts.push(Buffer.alloc(16)); i32(1); d.decode(take(), 0, 1n);
    u8(0x52); i32(9); str('public'); str('t'); u8(0x64); i16(cols.length);
    for (const [name, oid] of cols) { u8(name === 'id' ? 1 : 0); str(name); i32(oid); i32(-1); }
    d.decode(take(), 0, 2n);
    for (const r of rows) {
      u8(0x49); i32(9); u8(0x4e); i16(r.length);
      for (const v of r) { const b = Buffer.from(v); u8(0x74); i32(b.length); parts.push(b); }
      d.decode(take(), 0, 3n);
    }
    expect(events.map((e) => (e.kind === 'insert' ? e.after : null))).toEqual(rows.map((r) => r.map((v, i) => valueParser(columnType(cols[i]![1], -1))(v))));
  });
});

describe('PgoutputDecoder table order', () => {
  it('counts per table within each transaction, from 1 again in the next', () => {
    const events: ChangeEvent[] = [];
    const d = new PgoutputDecoder({ begin() {}, commit() {}, relation() {}, change: (e) => events.push(e), message() {} });
    const msg = (...parts: (number | string | Buffer)[]) => Buffer.concat(parts.map((p) => (typeof p === 'number' ? Buffer.from([p]) : typeof p === 'string' ? Buffer.from(`${p}\0`) : p)));
    const i32 = (v: number) => { const b = Buffer.alloc(4); b.writeInt32BE(v); return b; };
    const begin = (xid: number) => msg(0x42, Buffer.alloc(16), i32(xid));
    const commit = () => msg(0x43, 0, Buffer.alloc(24));
    const insert = (oid: number) => msg(0x49, i32(oid), 0x4e, Buffer.from([0, 1]), 0x74, i32(1), Buffer.from('1'));
    for (const oid of [1, 2]) d.decode(msg(0x52, i32(oid), 'public', `t${oid}`, 0x64, Buffer.from([0, 1]), 1, 'id', i32(20), i32(-1)), 0, 1n);
    for (const m of [begin(1), insert(1), insert(2), insert(1), insert(1), commit(), begin(2), insert(2), insert(1), insert(2), commit()]) d.decode(m, 0, 2n);
    expect(events.map((e) => [e.txId, e.relation.table, e.totalOrder, e.tableOrder])).toEqual([
      [1, 't1', 1, 1], [1, 't2', 2, 1], [1, 't1', 3, 2], [1, 't1', 4, 3], [2, 't2', 1, 1], [2, 't1', 2, 1], [2, 't2', 3, 2],
    ]);
  });
});
