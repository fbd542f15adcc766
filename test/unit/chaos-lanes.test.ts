import { describe, expect, it } from 'vitest';
import { faultResources, laneFits, laneSchedules, laneSeed, laneStartDelayMs, ResourceGuard } from '../../bench/chaos/lanes.ts';
import { RecoveryLatch, SharedObserver, type Observation } from '../../bench/chaos/probes.ts';
import { stackKinds } from '../../bench/chaos/schedule.ts';
import { Rng } from '../../src/generator/rng.ts';

const KINDS = stackKinds({ redisCluster: true });
const opts = { consumerTargets: ['warehouse-1', 'warehouse-2', 'clickstream'], zombieTargets: ['warehouse-1', 'warehouse-2'], minGapMs: 1000, maxGapMs: 3000, sessionTimeoutMs: 6000 };

describe('chaos fault lanes', () => {
  it('gives every kind a seed of its own, the same for the same run seed', () => {
    const seeds = KINDS.map((k) => laneSeed(1212, k));
    expect(new Set(seeds).size).toBe(KINDS.length);
    expect(KINDS.map((k) => laneSeed(1212, k))).toEqual(seeds);
    expect(KINDS.map((k) => laneSeed(1213, k))).not.toEqual(seeds);
    for (const s of seeds) expect(Number.isInteger(s) && s >= 0 && s < 2 ** 32).toBe(true);
  });

  it('deals each lane only its kind (and member), replayed from the seed whatever the other lanes are', () => {
    const take = (kinds: typeof KINDS, seed = 1212) => {
      const lanes = laneSchedules({ seed, ...opts, kinds });
      return new Map(lanes.map((l) => [l.name, { kind: l.kind, faults: Array.from({ length: 60 }, () => l.schedule.next()) }]));
    };
    const all = take(KINDS);
    // A lane per kind, and per member for the two member kinds.
    const memberLanes = [...opts.consumerTargets.map((m) => `kill-consumer:${m}`), ...opts.zombieTargets.map((m) => `zombie-consumer:${m}`)];
    expect(new Set(all.keys())).toEqual(new Set([...KINDS.filter((k) => k !== 'kill-consumer' && k !== 'zombie-consumer'), ...memberLanes]));
    for (const [name, { kind, faults }] of all) {
      for (const f of faults) {
        expect(f.kind).toBe(kind);
        if (name.includes(':')) expect(f.target).toBe(name.slice(name.indexOf(':') + 1));
      }
    }
    // A lane does not depend on which other lanes run.
    expect(take(['zombie-consumer', 'kill-broker']).get('kill-broker')).toEqual(all.get('kill-broker'));
    expect(take(['kill-consumer']).get('kill-consumer:clickstream')).toEqual(all.get('kill-consumer:clickstream'));
    expect(take(KINDS, 1213).get('kill-broker')).not.toEqual(all.get('kill-broker'));
    // Two members' lanes of one kind are not the same sequence.
    const gaps = (name: string) => all.get(name)!.faults.map((f) => f.gapMs);
    expect(gaps('kill-consumer:warehouse-1')).not.toEqual(gaps('kill-consumer:warehouse-2'));
    // Gaps in range; a zombie stays stopped past the session timeout.
    for (const { faults } of all.values()) for (const f of faults) expect(f.gapMs >= 1000 && f.gapMs <= 3000).toBe(true);
    for (const m of opts.zombieTargets) for (const f of all.get(`zombie-consumer:${m}`)!.faults) expect(f.stopMs! > 6000 + 1999 && f.stopMs! <= 6000 + 8000).toBe(true);
  });

  it('names the resource a fault holds: one member for both consumer kinds, one server each', () => {
    expect(faultResources({ kind: 'kill-consumer', target: 'warehouse-1' })).toEqual(faultResources({ kind: 'zombie-consumer', target: 'warehouse-1' }));
    expect(faultResources({ kind: 'kill-consumer', target: 'warehouse-1' })).not.toEqual(faultResources({ kind: 'zombie-consumer', target: 'warehouse-2' }));
    const servers = (['kill-broker', 'kill-redis-master', 'pg-restart', 'kill-capture', 'kill-api', 'kill-registry'] as const).map((kind) => faultResources({ kind, target: kind === 'kill-capture' ? 'capture' : kind === 'kill-api' ? 'api' : 'registry' })[0]);
    expect(new Set(servers).size).toBe(servers.length);
    expect(faultResources({ kind: 'kill-redis', target: 'redis' })).toEqual(faultResources({ kind: 'kill-redis-master', target: 'redis master' }));
  });

  it('never lets two holders share a resource, and grants every waiter (seeded random lanes)', async () => {
    const rng = new Rng(77);
    const guard = new ResourceGuard();
    const names = ['a', 'b', 'c', 'd'];
    const holders = new Map<string, number>();
    let granted = 0;
    let maxAtOnce = 0;
    const lane = async (id: number) => {
      for (let i = 0; i < 25; i++) {
        const want = names.filter(() => rng.chance(0.4));
        if (want.length === 0) want.push(rng.pick(names));
        const release = await guard.acquire(want);
        for (const n of want) {
          expect(holders.has(n), `lane ${id} got ${n} while lane ${holders.get(n)} held it`).toBe(false);
          holders.set(n, id);
        }
        granted++;
        maxAtOnce = Math.max(maxAtOnce, new Set(holders.values()).size);
        await new Promise((r) => setTimeout(r, rng.int(0, 3)));
        for (const n of want) holders.delete(n);
        release();
        release(); // twice is harmless
      }
    };
    await Promise.all(Array.from({ length: 6 }, (_, i) => lane(i)));
    expect(granted).toBe(6 * 25);
    expect(guard.holding).toEqual([]);
    // Not serial: lanes on different resources did hold at the same time.
    expect(maxAtOnce).toBeGreaterThan(1);
  });

  it('grants a later waiter on free resources at once, but not past an earlier waiter for the same one', async () => {
    const guard = new ResourceGuard();
    const order: string[] = [];
    const r1 = await guard.acquire(['member:w1']);
    const second = guard.acquire(['member:w1']).then((r) => { order.push('second w1'); return r; });
    const third = guard.acquire(['kafka']).then((r) => { order.push('kafka'); return r; });
    await third;
    expect(order).toEqual(['kafka']);
    r1();
    (await second)();
    (await third)();
    expect(order).toEqual(['kafka', 'second w1']);
    expect(guard.holding).toEqual([]);
  });

  it('starts the lanes apart, not all in the same second', () => {
    const starts = KINDS.map((_, i) => laneStartDelayMs(i));
    expect(starts[0]).toBe(0);
    for (let i = 1; i < starts.length; i++) expect(starts[i]! - starts[i - 1]!).toBeGreaterThanOrEqual(2000);
  });

  it('fits another fault of a lane only below the per-kind and total bounds and with time left', () => {
    const next = { kind: 'kill-broker' as const, target: 'kafka', gapMs: 2000 };
    const base = { now: 0, endAt: 2000 + 60_000, kindSoFar: 49, faultsPerKind: 50, faultsSoFar: 0, maxFaults: 1000, next, reserveMs: 60_000 };
    expect(laneFits(base)).toBe(true);
    expect(laneFits({ ...base, kindSoFar: 50 })).toBe(false);
    expect(laneFits({ ...base, faultsPerKind: undefined, kindSoFar: 5000 })).toBe(true);
    expect(laneFits({ ...base, faultsSoFar: 1000 })).toBe(false);
    expect(laneFits({ ...base, now: 1 })).toBe(false);
  });
});

describe('recovery measured per fault', () => {
  it('counts each check once it passed after the fault, even if another fault knocks it over again', () => {
    const latch = new RecoveryLatch(['capture', 'api', 'registry']);
    expect(latch.note(['capture', 'api', 'registry'])).toEqual(['capture', 'api', 'registry']);
    expect(latch.note(['capture', 'registry'])).toEqual(['capture', 'registry']);
    // api down again (another lane's kill): it had recovered from this fault already.
    expect(latch.note(['api', 'registry'])).toEqual(['registry']);
    expect(latch.note(['api'])).toEqual([]);
  });

  it('shares one observation among callers that accept it, and starts none before the asked moment', async () => {
    let calls = 0;
    const observe = async (): Promise<Observation> => {
      calls++;
      const at = Date.now();
      await new Promise((r) => setTimeout(r, 20));
      return { at, captureLsn: 0n, members: new Map(), groups: new Map(), outboxMinId: null, api: true, registry: true };
    };
    const o = new SharedObserver(observe, 50);
    const t = Date.now();
    const [a, b] = await Promise.all([o.after(t), o.after(t)]);
    expect(calls).toBe(1);
    expect(a).toBe(b);
    // Asking for one newer than the last waits for the interval and starts a new reading.
    const c = await o.after(a.at + 1);
    expect(calls).toBe(2);
    expect(c.at).toBeGreaterThanOrEqual(a.at + 50);
  });
});
