import { describe, expect, it } from 'vitest';
import { covers, replayedCount, type PartitionRange } from '../../src/rebuild/start-offsets.ts';

const range = (partition: number, start: bigint, end: bigint, low = 0n): PartitionRange => ({ topic: 't', partition, low, start, end });

describe('replay progress and handover conditions', () => {
  it('counts applied messages per partition between start and end, capped at the end, missing rows as nothing applied', () => {
    const ranges = [range(0, 0n, 100n), range(1, 10n, 50n), range(2, 5n, 5n)];
    expect(replayedCount(ranges, new Map())).toEqual({ done: 0, total: 140, caughtUp: false });
    // Partition 1 already past its end (new messages since the start): counts as its range only.
    expect(replayedCount(ranges, new Map([['t/0', '60'], ['t/1', '70']]))).toEqual({ done: 100, total: 140, caughtUp: false });
    expect(replayedCount(ranges, new Map([['t/0', '100'], ['t/1', '50']]))).toEqual({ done: 140, total: 140, caughtUp: true });
  });

  it('lets the swap go ahead only when the rebuild is at or past the live group on every partition the live group stored', () => {
    const live = new Map([['a/0', '10'], ['a/1', '7']]);
    expect(covers(new Map([['a/0', '10'], ['a/1', '9'], ['b/0', '3']]), live)).toBe(true);
    expect(covers(new Map([['a/0', '10'], ['a/1', '6']]), live)).toBe(false);
    // A partition the rebuild has no position for is not covered, whatever the live offset.
    expect(covers(new Map([['a/0', '10']]), live)).toBe(false);
    // A live group that never stored anything (new, or stopped before its first batch) is covered by anything.
    expect(covers(new Map(), new Map())).toBe(true);
    // Offsets compare as integers, not strings.
    expect(covers(new Map([['a/0', '100'], ['a/1', '10']]), new Map([['a/0', '99'], ['a/1', '9']]))).toBe(true);
  });
});
