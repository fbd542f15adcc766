import { describe, expect, it } from 'vitest';
import { validateChangeEvent, type ChangeEvent, type Relation } from '../../src/source/change-event.ts';
import { PgoutputDecoder, type DecoderSink } from '../../src/source/pgoutput.ts';
import { Msg } from '../helpers/pgoutput-messages.ts';
import { UNAVAILABLE, parseArrayLiteral, parseDate, parseScalar, parseTimestamp, columnType, civilFromDays, daysFromCivil } from '../../src/source/pg-values.ts';

const PG_TS = 1_000_000n; // 2000-01-01T00:00:01Z in pg epoch micros

function collect() {
  const events: ChangeEvent[] = [];
  const log: string[] = [];
  const relations: [Relation, boolean][] = [];
  const sink: DecoderSink = {
    begin: (b) => log.push(`begin ${b.txId}`),
    commit: (c) => log.push(`commit ${c.endLsn}`),
    relation: (r, changed) => relations.push([r, changed]),
    change: (e) => events.push(validateChangeEvent(e)),
    message: (m) => log.push(`message ${m.prefix}`),
  };
  return { events, log, relations, decoder: new PgoutputDecoder(sink) };
}

function relationMsg(cols: [string, number, number, boolean][]) {
  const m = new Msg().ch('R').i32(16400).str('public').str('t').ch('f').i16(cols.length);
  for (const [name, oid, mod, key] of cols) m.u8(key ? 1 : 0).str(name).i32(oid).i32(mod);
  return m.buf;
}

describe('pg value parsing', () => {
  it('keeps timestamp microseconds and applies offsets', () => {
    expect(parseTimestamp('2024-03-05 10:11:12.123456+00')).toBe(1709633472123456n);
    expect(parseTimestamp('2024-03-05 15:41:12.123456+05:30')).toBe(1709633472123456n);
    expect(parseTimestamp('2024-03-05 10:11:12')).toBe(1709633472000000n);
    expect(parseTimestamp('2024-03-05 10:11:12.5')).toBe(1709633472500000n);
    expect(parseTimestamp('0044-03-15 12:00:00+00 BC')).toBeLessThan(0n);
  });
  it('dates as days since epoch, any year', () => {
    expect(parseDate('1970-01-01')).toBe(0);
    expect(parseDate('2024-02-29')).toBe(19782);
    for (const d of [-800000, -1, 0, 19782, 2932896]) expect(daysFromCivil(...civilFromDays(d))).toBe(d);
  });
  it('numeric type modifiers and exact values', () => {
    expect(columnType(1700, ((10 << 16) | 2) + 4)).toEqual({ kind: 'numeric', isArray: false, precision: 10, scale: 2 });
    expect(columnType(1700, -1)).toEqual({ kind: 'numeric', isArray: false });
    expect(parseScalar('numeric', '12345678901234567890.12')).toBe('12345678901234567890.12');
    expect(parseScalar('int64', '9223372036854775807')).toBe(9223372036854775807n);
    expect(parseScalar('bytea', '\\x00ff10')).toEqual(Buffer.from([0, 255, 16]));
  });
  it('array literals with quotes, nulls, nesting and bounds', () => {
    const text = (s: string) => s;
    expect(parseArrayLiteral('{a,"b c","x\\"y",NULL}', text)).toEqual(['a', 'b c', 'x"y', null]);
    expect(parseArrayLiteral('{{1,2},{3,4}}', (s) => Number(s))).toEqual([[1, 2], [3, 4]]);
    expect(parseArrayLiteral('[0:1]={7,8}', (s) => Number(s))).toEqual([7, 8]);
    expect(parseArrayLiteral('{}', text)).toEqual([]);
    expect(parseArrayLiteral('{"\\\\x0102"}', (s) => parseScalar('bytea', s))).toEqual([Buffer.from([1, 2])]);
  });
});

describe('PgoutputDecoder', () => {
  const cols: [string, number, number, boolean][] = [['id', 20, -1, true], ['body', 25, -1, false], ['price', 1700, ((10 << 16) | 2) + 4, false], ['at', 1184, -1, false]];

  it('decodes a transaction into ordered, typed events', () => {
    const { decoder, events, log, relations } = collect();
    decoder.decode(new Msg().ch('B').u64(0x200n).u64(PG_TS).i32(777).buf, 0, 0x100n);
    decoder.decode(relationMsg(cols), 0, 0x110n);
    decoder.decode(new Msg().ch('I').i32(16400).ch('N').tuple(['1', 'hello', '9.99', '2000-01-01 00:00:01.000001+00']).buf, 0, 0x120n);
    decoder.decode(new Msg().ch('U').i32(16400).ch('O').tuple(['1', 'hello', '9.99', '2000-01-01 00:00:01+00']).ch('N').tuple(['1', 'U', '10.00', '2000-01-01 00:00:02+00']).buf, 0, 0x130n);
    decoder.decode(new Msg().ch('D').i32(16400).ch('K').tuple(['1', null, null, null]).buf, 0, 0x140n);
    decoder.decode(new Msg().ch('T').i32(1).u8(0).i32(16400).buf, 0, 0x150n);
    decoder.decode(new Msg().ch('C').u8(0).u64(0x200n).u64(0x228n).u64(PG_TS).buf, 0, 0x200n);

    expect(log).toEqual(['begin 777', 'commit 552']);
    expect(relations[0]![1]).toBe(true);
    expect(events.map((e) => e.kind)).toEqual(['insert', 'update', 'delete', 'truncate']);
    expect(events.map((e) => e.totalOrder)).toEqual([1, 2, 3, 4]);
    expect(events.map((e) => e.tableOrder)).toEqual([1, 2, 3, 4]);
    const [ins, upd, del] = events;
    expect(ins!.kind === 'insert' && ins!.after).toEqual([1n, 'hello', '9.99', 946684801000001n]);
    expect(ins!.commitLsn).toBe(0x200n);
    expect(ins!.commitTimeUs).toBe(946684801000000n);
    expect(ins!.txId).toBe(777);
    if (upd?.kind !== "update") throw new Error("expected update");
    expect(upd.after[1]).toBe(UNAVAILABLE);
    expect(upd.before?.[1]).toBe('hello');
    if (del?.kind !== "delete") throw new Error("expected delete");
    expect(del.beforeKeyOnly).toBe(true);
    expect(del.before[0]).toBe(1n);
  });

  it('reports an identical Relation resend as unchanged and a new column as changed', () => {
    const { decoder, relations } = collect();
    decoder.decode(relationMsg(cols), 0, 1n);
    decoder.decode(relationMsg(cols), 0, 2n);
    decoder.decode(relationMsg([...cols, ['note', 25, -1, false]]), 0, 3n);
    expect(relations.map(([, c]) => c)).toEqual([true, false, true]);
    expect(relations[0]![0]).toBe(relations[1]![0]);
  });

  it('rejects a change for an unknown relation and unknown messages', () => {
    const { decoder } = collect();
    decoder.decode(new Msg().ch('B').u64(1n).u64(PG_TS).i32(1).buf, 0, 1n);
    expect(() => decoder.decode(new Msg().ch('I').i32(99).ch('N').tuple(['1']).buf, 0, 2n)).toThrow(/before its Relation/);
    expect(() => decoder.decode(new Msg().ch('Z').buf, 0, 2n)).toThrow(/unknown pgoutput message/);
  });

  it('validator refuses events that break the contract', () => {
    const { decoder, events } = collect();
    decoder.decode(new Msg().ch('B').u64(1n).u64(PG_TS).i32(1).buf, 0, 1n);
    decoder.decode(relationMsg(cols), 0, 1n);
    decoder.decode(new Msg().ch('I').i32(16400).ch('N').tuple(['1', 'x', '1.00', '2000-01-01 00:00:01+00']).buf, 0, 2n);
    const good = events[0]!;
    expect(() => validateChangeEvent({ ...good, after: [null, 'x', '1.00', 1n] } as ChangeEvent)).toThrow(/key column id/);
    expect(() => validateChangeEvent({ ...good, after: [1n, 'x', 1.5, 1n] } as ChangeEvent)).toThrow(/decimal string/);
    expect(() => validateChangeEvent({ ...good, after: [1n, UNAVAILABLE, '1.00', 1n] } as ChangeEvent)).toThrow(/unavailable/);
    expect(() => validateChangeEvent({ ...good, lsn: 5 } as unknown as ChangeEvent)).toThrow(/lsn/);
  });
});
