import { describe, expect, it } from 'vitest';
import { GroupCommit } from '../../src/consumer/group-commit.ts';
import { StageTimer } from '../../src/consumer/stage-timer.ts';

describe('GroupCommit', () => {
  it('applies items submitted in the same turn together, and those arriving during a run in the next run', async () => {
    const runs: number[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    const gc = new GroupCommit<number, string>(async (items) => {
      runs.push(items);
      if (runs.length === 1) await gate;
      return items.map((i) => `r${i}`);
    });
    const first = [gc.submit(1), gc.submit(2), gc.submit(3)];
    await new Promise((r) => setImmediate(r));
    // run 1 is in progress: these wait and go together
    const second = [gc.submit(4), gc.submit(5)];
    expect(gc.waiting).toBe(2);
    release();
    expect(await Promise.all([...first, ...second])).toEqual(['r1', 'r2', 'r3', 'r4', 'r5']);
    expect(runs).toEqual([[1, 2, 3], [4, 5]]);
  });

  it('rejects every item of a failed run and keeps serving later ones', async () => {
    let fail = true;
    const gc = new GroupCommit<number, number>(async (items) => {
      if (fail) throw new Error('tx failed');
      return items.map((i) => i * 2);
    });
    const a = gc.submit(1);
    const b = gc.submit(2);
    await expect(a).rejects.toThrow('tx failed');
    await expect(b).rejects.toThrow('tx failed');
    fail = false;
    expect(await gc.submit(3)).toBe(6);
  });

  it('caps a run at maxItems', async () => {
    const runs: number[][] = [];
    const gc = new GroupCommit<number, number>(async (items) => { runs.push(items); return items; }, 2);
    await Promise.all([1, 2, 3, 4, 5].map((i) => gc.submit(i)));
    expect(runs).toEqual([[1, 2], [3, 4], [5]]);
  });

  it('refuses a result list that does not match the items', async () => {
    const gc = new GroupCommit<number, number>(async () => [1]);
    const r = Promise.all([gc.submit(1), gc.submit(2)]);
    await expect(r).rejects.toThrow('1 results for 2 items');
  });
});

describe('StageTimer', () => {
  it('sums laps per stage and reports shares of the window', () => {
    let t = 0;
    const timer = new StageTimer(undefined, 'test', 1_000_000, () => t);
    const lap = timer.laps();
    t = 10;
    lap('a');
    t = 40;
    lap('b');
    t = 50;
    lap('a');
    timer.add('c', 5);
    t = 100;
    const s = timer.snapshot();
    expect(s.stages).toEqual({ a: { ms: 20, n: 2, share: 0.2 }, b: { ms: 30, n: 1, share: 0.3 }, c: { ms: 5, n: 1, share: 0.05 } });
  });
});
