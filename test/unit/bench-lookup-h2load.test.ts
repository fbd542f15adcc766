import { describe, expect, it } from 'vitest';
import { childrenCpuS, readLog } from '../../bench/lookup/h2load.ts';

/** h2load's --log-file rows: start µs since the epoch, status (-1: failed), µs to the end of the answer. */
const row = (startUs: number, status: number, durationUs: number) => `${startUs}\t${status}\t${durationUs}`;

describe('bench:lookup h2load log', () => {
  it('counts answers by status and keeps the latencies of the 2xx ones in ms', () => {
    const log = [row(1_000_000, 200, 500), row(1_000_200, 200, 1_500), row(1_000_400, 404, 300), row(1_000_600, -1, 0)].join('\n');
    const r = readLog(`${log}\n`, 8);
    expect(r.requests).toBe(4);
    expect(r.non2xx).toBe(1);
    expect(r.errors).toBe(1);
    expect([...r.latenciesMs]).toEqual([0.5, 1.5]);
  });

  it('finds the longest time without a start, whatever order the rows come in (they are ordered by end)', () => {
    const log = [row(1_010_000, 200, 100), row(1_000_000, 200, 100), row(1_000_200, 200, 100), row(1_013_500, 200, 100)].join('\n');
    const r = readLog(log, 8);
    expect(r.maxStartGapMs).toBe(9.8);
    expect(r.startGapsOver2Ms).toBe(2);
  });

  it('says a request may have waited for the in-flight limit once an answer took (inFlight - 1) ticks of 10 ms', () => {
    expect(readLog(row(0, 200, 69_999), 8).holdBackPossible).toBe(false);
    expect(readLog(row(0, 200, 70_000), 8).holdBackPossible).toBe(true);
    expect(readLog(row(0, 200, 10_000), 2).holdBackPossible).toBe(true);
  });

  it("reads the children's CPU from bash's times after h2load's own output", () => {
    const out = 'finished in 5.0s\nrequests: 10 total\nH2LOAD_TIMES\n0m0.002s 0m0.001s\n1m2.500s 0m0.250s\n';
    expect(childrenCpuS(out)).toBeCloseTo(62.75, 6);
  });
});
