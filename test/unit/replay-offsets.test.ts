import { describe, expect, it } from 'vitest';
import { trimmedTables } from '../../src/rebuild/rebuild-coverage.ts';
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

describe('trimmedTables: the tables whose topic lost its head (log start above 0)', () => {
  const r = (topic: string, partition: number, low: bigint) => ({ topic, partition, low, start: low, end: low + 10n });
  it('names a table once when any of its partitions has a moved log start; compacted topics (log start 0) are not named', () => {
    expect(trimmedTables([
      r('shop.public.customers', 0, 0n), r('shop.public.customers', 1, 7n), r('shop.public.customers', 2, 9n),
      r('shop.public.orders', 0, 0n), r('shop.public.order_items', 0, 3n),
    ])).toEqual(['customers', 'order_items']);
    expect(trimmedTables([r('shop.public.products', 0, 0n)])).toEqual([]);
  });
  it('ignores topics that are not a source table', () => {
    expect(trimmedTables([r('shop.public.clicks', 0, 5n)])).toEqual([]);
  });
});
