import { describe, expect, it } from 'vitest';
import { compareOrder, sequenceRank } from '../../src/consumer/envelope.ts';
import { ValidationError } from '../../src/errors.ts';
import { collapseRuns, type CustomerChange } from '../../src/transforms/scd2.ts';

describe('ordering key (seq, lsn)', () => {
  it('reads seq from source.sequence as Debezium writes it', () => {
    expect(sequenceRank('["48065296","48064968"]', 48064968n)).toBe(48065296n);
    expect(sequenceRank('[null,"23958824"]', 23958824n)).toBe(23958824n);
    expect(sequenceRank(' ["18446744073709551615", "1"] ', 1n)).toBe(18446744073709551615n);
    expect(sequenceRank(null, 7n)).toBe(7n);
    expect(sequenceRank(undefined, 7n)).toBe(7n);
    expect(() => sequenceRank('48065296', 1n)).toThrow(ValidationError);
    expect(() => sequenceRank(['1', '2'], 1n)).toThrow(ValidationError);
  });

  it('puts a late-committed change with a low LSN after a row emitted at a later LSN (issue 17)', () => {
    // the re-snapshot row at the high watermark, then the update of a transaction that began before it and committed after
    const row = { seq: 48065000n, lsn: 48065296n };
    const update = { seq: 48065400n, lsn: 48064968n };
    expect(compareOrder(update, row)).toBe(1);
    expect(compareOrder(row, update)).toBe(-1);
    // inside one transaction the LSN decides
    expect(compareOrder({ seq: 5n, lsn: 9n }, { seq: 5n, lsn: 7n })).toBe(1);
    expect(compareOrder({ seq: 5n, lsn: 9n }, { seq: 5n, lsn: 9n })).toBe(0);
  });

  it('orders SCD2 history by (seq, lsn), not by lsn', () => {
    const ch = (seq: bigint, lsn: bigint, segment: string, updatedUs: bigint): CustomerChange =>
      ({ seq, lsn, op: 'u', updatedUs, committedUs: updatedUs, segment, email: null, fullName: null });
    const late = ch(300n, 100n, 'gold', 2n); // low LSN, committed last
    const early = ch(200n, 250n, 'silver', 1n);
    expect(collapseRuns([late, early]).map((c) => c.segment)).toEqual(['silver', 'gold']);
  });
});
