import { describe, expect, it } from 'vitest';
import { checkSlotSamples, memberProgressed, metricSum } from '../../bench/chaos/probes.ts';
import { FaultSchedule, fitsAnother, quantile, stackKinds, summarize, type FaultRecord } from '../../bench/chaos/schedule.ts';

const FAULT_KINDS = stackKinds({ redisCluster: false });

const opts = { consumerTargets: ['warehouse-1', 'warehouse-2', 'clickstream'], zombieTargets: ['warehouse-1', 'warehouse-2'], minGapMs: 1000, maxGapMs: 5000, sessionTimeoutMs: 6000 };

describe('chaos fault schedule', () => {
  it('is the same sequence for the same seed and a different one for another seed', () => {
    const take = (seed: number) => { const s = new FaultSchedule({ seed, ...opts }); return Array.from({ length: 40 }, () => s.next()); };
    expect(take(11)).toEqual(take(11));
    expect(take(11)).not.toEqual(take(12));
  });

  it('deals every kind once per round, so k rounds hold each kind exactly k times', () => {
    const s = new FaultSchedule({ seed: 3, ...opts });
    const faults = Array.from({ length: FAULT_KINDS.length * 7 }, () => s.next());
    for (let r = 0; r < 7; r++) {
      expect(new Set(faults.slice(r * FAULT_KINDS.length, (r + 1) * FAULT_KINDS.length).map((f) => f.kind))).toEqual(new Set(FAULT_KINDS));
    }
    // Shuffled, not in declaration order every round.
    expect(faults.slice(0, FAULT_KINDS.length).map((f) => f.kind)).not.toEqual([...FAULT_KINDS]);
  });

  it('keeps gaps in range, picks consumer targets from the lists and stops a zombie past the session timeout', () => {
    const s = new FaultSchedule({ seed: 99, ...opts });
    const faults = Array.from({ length: 400 }, () => s.next());
    for (const f of faults) {
      expect(f.gapMs).toBeGreaterThanOrEqual(1000);
      expect(f.gapMs).toBeLessThanOrEqual(5000);
      if (f.kind === 'kill-consumer') expect(opts.consumerTargets).toContain(f.target);
      if (f.kind === 'zombie-consumer') {
        expect(opts.zombieTargets).toContain(f.target);
        expect(f.stopMs).toBeGreaterThan(6000 + 1999);
        expect(f.stopMs).toBeLessThanOrEqual(6000 + 8000);
      } else expect(f.stopMs).toBeUndefined();
    }
    expect(new Set(faults.filter((f) => f.kind === 'kill-consumer').map((f) => f.target))).toEqual(new Set(opts.consumerTargets));
  });

  it('deals consumer targets so that every member is hit once before any is hit twice', () => {
    const s = new FaultSchedule({ seed: 5, ...opts });
    const kills = Array.from({ length: 80 }, () => s.next()).filter((f) => f.kind === 'kill-consumer').map((f) => f.target);
    expect(kills.length).toBeGreaterThanOrEqual(9);
    for (let i = 0; i + 3 <= kills.length; i += 3) expect(new Set(kills.slice(i, i + 3))).toEqual(new Set(opts.consumerTargets));
  });

  it('only schedules the kinds asked for, and refuses an empty or untargeted plan', () => {
    const s = new FaultSchedule({ seed: 1, ...opts, kinds: ['kill-redis', 'pg-restart'] });
    expect(new Set(Array.from({ length: 20 }, () => s.next().kind))).toEqual(new Set(['kill-redis', 'pg-restart']));
    expect(() => new FaultSchedule({ seed: 1, ...opts, kinds: [] })).toThrow(/no fault kinds/);
    expect(() => new FaultSchedule({ seed: 1, ...opts, consumerTargets: [] })).toThrow(/kill-consumer needs a target/);
    expect(() => new FaultSchedule({ seed: 1, ...opts, minGapMs: 5, maxGapMs: 4 })).toThrow(/empty/);
  });

  it('fits another fault only within the count and with time for its gap, stop and the stall bound', () => {
    const next = { kind: 'zombie-consumer' as const, target: 'warehouse-1', gapMs: 2000, stopMs: 9000 };
    const base = { now: 0, endAt: 2000 + 9000 + 60_000, faultsSoFar: 0, maxFaults: 3, next, reserveMs: 60_000 };
    expect(fitsAnother(base)).toBe(true);
    expect(fitsAnother({ ...base, now: 1 })).toBe(false);
    expect(fitsAnother({ ...base, faultsSoFar: 3 })).toBe(false);
  });
});

describe('chaos report figures', () => {
  it('nearest-rank quantiles', () => {
    expect(quantile([], 0.5)).toBeUndefined();
    expect(quantile([5], 0.5)).toBe(5);
    expect(quantile([4, 1, 3, 2], 0.5)).toBe(2);
    expect(quantile([1, 2, 3, 4, 5], 0.5)).toBe(3);
    expect(quantile([1, 2, 3, 4, 5], 1)).toBe(5);
  });

  it('summarizes per kind, counting a stalled fault as a fault not recovered', () => {
    const f = (n: number, kind: FaultRecord['kind'], recoveryMs: number | null): FaultRecord => ({ n, kind, target: 't', atS: n, recoveryMs });
    const s = summarize([f(1, 'kill-redis', 3000), f(2, 'kill-redis', 1000), f(3, 'kill-redis', 2000), f(4, 'pg-restart', null), f(5, 'pg-restart', 8000)]);
    expect(s.byKind).toEqual([
      { kind: 'kill-redis', faults: 3, recovered: 3, p50Ms: 2000, maxMs: 3000 },
      { kind: 'pg-restart', faults: 2, recovered: 1, p50Ms: 8000, maxMs: 8000 },
    ]);
    expect(s.all).toEqual({ faults: 5, recovered: 4, p50Ms: 2000, maxMs: 8000 });
  });

  it('sums a Prometheus metric over its label sets, ignoring metrics with a longer name', () => {
    const text = ['# HELP x', 'consumer_messages_applied_total{topic="a"} 5', 'consumer_messages_applied_total{topic="b"} 7', 'consumer_messages_applied_total_other 100', 'capture_confirmed_lsn 123456'].join('\n');
    expect(metricSum(text, 'consumer_messages_applied_total')).toBe(12);
    expect(metricSum(text, 'capture_confirmed_lsn')).toBe(123456);
    expect(metricSum(text, 'absent')).toBeUndefined();
  });
});

describe('slot claims against the topic', () => {
  const orderLsns = [{ lsn: 100n, maxOrderId: 2 }, { lsn: 200n, maxOrderId: 4 }, { lsn: 300n, maxOrderId: 5 }];
  const records = new Map([[1, { partition: 0, offset: 0n }], [2, { partition: 1, offset: 0n }], [3, { partition: 0, offset: 1n }], [4, { partition: 1, offset: 5n }], [5, { partition: 0, offset: 9n }]]);
  const inSource = new Set([1, 2, 3, 4, 5, 6]);

  it('passes when every order committed before the sampled slot position sits below the sampled high watermark', () => {
    const samples = [{ at: 1, confirmed: 250n, highs: new Map([[0, 2n], [1, 6n]]) }];
    expect(checkSlotSamples(samples, orderLsns, records, inSource)).toEqual([]);
  });

  it('flags an order the slot had confirmed that Kafka did not hold yet', () => {
    const samples = [{ at: 1, confirmed: 250n, highs: new Map([[0, 2n], [1, 5n]]) }];
    expect(checkSlotSamples(samples, orderLsns, records, inSource).map((v) => v.orderId)).toEqual([4]);
  });

  it('flags an order in the source with no record at all, and ignores ids that were never written', () => {
    const missing = new Map(records);
    missing.delete(3);
    const samples = [{ at: 1, confirmed: 300n, highs: new Map([[0, 10n], [1, 10n]]) }];
    expect(checkSlotSamples(samples, orderLsns, missing, inSource).map((v) => v.orderId)).toEqual([3]);
    expect(checkSlotSamples(samples, orderLsns, missing, new Set([1, 2, 4, 5]))).toEqual([]);
  });

  it('counts a consumer member as progressed across a restart and a counter reset under the same pid', () => {
    const before = { pid: 10, n: 500 };
    expect(memberProgressed(before, { pid: 10, applied: 500 })).toBe(false);
    expect(memberProgressed(before, { pid: 10, applied: 501 })).toBe(true);
    // services rebuilt in-process: the counter started again from 0
    expect(memberProgressed(before, { pid: 10, applied: 0 })).toBe(false);
    expect(memberProgressed(before, { pid: 10, applied: 7 })).toBe(true);
    // a new process
    expect(memberProgressed(before, { pid: 11, applied: 0 })).toBe(false);
    expect(memberProgressed(before, { pid: 11, applied: 3 })).toBe(true);
    expect(memberProgressed(before, { pid: 10, applied: undefined })).toBe(false);
    expect(memberProgressed(undefined, { pid: 10, applied: 1 })).toBe(true);
  });
});
