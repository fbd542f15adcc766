import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { customerKey, scd2Versions, type CustomerChange } from '../../src/transforms/scd2.ts';
import { END_OF_TIME_US, formatInstantUs, parseInstantUs } from '../../src/transforms/time.ts';

const us = (s: string) => parseInstantUs(s)!;
let lsn = 100n;
function ch(op: CustomerChange['op'], updated: string | null, segment: string | null, extra: Partial<CustomerChange> = {}): CustomerChange {
  lsn += 10n;
  return { seq: 0n, lsn, op, updatedUs: updated ? us(updated) : null, committedUs: us(extra.committedUs ? formatInstantUs(extra.committedUs) : updated ?? '2024-01-01T00:00:00Z'), segment, email: 'a@x.io', fullName: 'A B', ...extra };
}
const fmt = (v: { effectiveUs: bigint; expirationUs: bigint; segment: string | null; isCurrent: boolean }) =>
  `${v.segment} ${formatInstantUs(v.effectiveUs)} ${formatInstantUs(v.expirationUs)} ${v.isCurrent}`;

describe('scd2Versions', () => {
  it('opens the first version at the insert updated_at and keeps it current until 9999-12-31', () => {
    const v = scd2Versions('7', [ch('c', '2024-01-01T10:00:00.123456Z', 'bronze')]);
    expect(v.map(fmt)).toEqual(['bronze 2024-01-01T10:00:00.123456Z 9999-12-31T00:00:00.000000Z true']);
    expect(v[0]!.expirationUs).toBe(END_OF_TIME_US);
  });

  it('closes on a segment change at the change updated_at and opens the next at the same instant', () => {
    const v = scd2Versions('7', [ch('c', '2024-01-01T10:00:00Z', 'bronze'), ch('u', '2024-02-01T00:00:00.000001Z', 'gold')]);
    expect(v.map(fmt)).toEqual([
      'bronze 2024-01-01T10:00:00.000000Z 2024-02-01T00:00:00.000001Z false',
      'gold 2024-02-01T00:00:00.000001Z 9999-12-31T00:00:00.000000Z true',
    ]);
  });

  it('overwrites the current version on other attribute changes only', () => {
    const v = scd2Versions('7', [
      ch('c', '2024-01-01T00:00:00Z', 'bronze', { email: 'old@x.io' }),
      ch('u', '2024-01-05T00:00:00Z', 'silver', { email: 'old@x.io' }),
      ch('u', '2024-01-09T00:00:00Z', 'silver', { email: 'new@x.io' }),
    ]);
    expect(v.map((x) => x.email)).toEqual(['old@x.io', 'new@x.io']);
    expect(v.map(fmt)[1]).toBe('silver 2024-01-05T00:00:00.000000Z 9999-12-31T00:00:00.000000Z true');
  });

  it('closes the current version at the delete commit time and reopens on re-insert', () => {
    const v = scd2Versions('7', [
      ch('c', '2024-01-01T00:00:00Z', 'bronze'),
      ch('d', null, null, { committedUs: us('2024-03-01T12:00:00.5Z') }),
      ch('c', '2024-04-01T00:00:00Z', 'bronze'),
    ]);
    expect(v.map(fmt)).toEqual([
      'bronze 2024-01-01T00:00:00.000000Z 2024-03-01T12:00:00.500000Z false',
      'bronze 2024-04-01T00:00:00.000000Z 9999-12-31T00:00:00.000000Z true',
    ]);
  });

  it('treats changes sharing one updated_at as one change, the last winning', () => {
    const v = scd2Versions('7', [
      ch('c', '2024-01-01T00:00:00Z', 'bronze'),
      ch('u', '2024-01-01T00:00:00Z', 'gold', { email: 'last@x.io' }),
      ch('u', '2024-02-01T00:00:00Z', 'silver'),
      ch('u', '2024-02-01T00:00:00Z', 'gold'),
    ]);
    expect(v.map(fmt)).toEqual(['gold 2024-01-01T00:00:00.000000Z 9999-12-31T00:00:00.000000Z true']);
  });

  it('is order-independent on input and idempotent under duplicates', () => {
    const hist = [ch('c', '2024-01-01T00:00:00Z', 'bronze'), ch('u', '2024-02-01T00:00:00Z', 'gold'), ch('u', '2024-03-01T00:00:00Z', 'platinum')];
    const a = scd2Versions('9', hist);
    expect(scd2Versions('9', [...hist].reverse())).toEqual(a);
    expect(scd2Versions('9', [...hist, ...hist])).toEqual(a);
    expect(a).toHaveLength(3);
  });

  it('ignores a delete of a customer with no open version', () => {
    expect(scd2Versions('7', [ch('d', null, null)])).toEqual([]);
  });

  it('hashes customer_key as md5(id-YYYY-MM-DDTHH:MI:SS.USZ)', () => {
    const expected = createHash('md5').update('42-2024-05-06T07:08:09.000010Z').digest('hex');
    expect(customerKey('42', us('2024-05-06T07:08:09.00001Z'))).toBe(expected);
  });
});

describe('time', () => {
  it('parses offsets and keeps microseconds', () => {
    expect(formatInstantUs(us('2024-01-01T02:00:00.123456+02:00'))).toBe('2024-01-01T00:00:00.123456Z');
    expect(formatInstantUs(us('1969-12-31T23:59:59.999999Z'))).toBe('1969-12-31T23:59:59.999999Z');
    expect(parseInstantUs('2024-02-30T00:00:00Z')).toBeUndefined();
    expect(formatInstantUs(us('0099-03-04T05:06:07.000008Z'))).toBe('0099-03-04T05:06:07.000008Z');
    expect(parseInstantUs('nope')).toBeUndefined();
  });
});
