import pino from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { loadWatchdogConfig } from '../../src/health/config.ts';
import { HealthState } from '../../src/health/health-state.ts';
import { ProgressWatchdog, WatchdogRunner, type StalledError, type WatchdogSample } from '../../src/health/watchdog.ts';

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => { t += ms; } };
}

const limits = { unhealthyMs: 60_000, exitMs: 300_000 };

describe('ProgressWatchdog rule', () => {
  it('never stalls without work, however long nothing moves', () => {
    const c = clock();
    const w = new ProgressWatchdog(limits, c.now);
    for (let i = 0; i < 100; i++) {
      expect(w.observe({ work: false, progress: 5n }).state).toBe('idle');
      c.advance(10_000);
    }
  });

  it('work and no progress: waiting, then stalled at the unhealthy limit, then exit at the exit limit', () => {
    const c = clock();
    const w = new ProgressWatchdog(limits, c.now);
    expect(w.observe({ work: true, progress: 10n }).state).toBe('waiting');
    c.advance(59_999);
    expect(w.observe({ work: true, progress: 10n })).toEqual({ state: 'waiting', stalledMs: 59_999 });
    c.advance(1);
    expect(w.observe({ work: true, progress: 10n })).toEqual({ state: 'stalled', stalledMs: 60_000 });
    c.advance(239_999);
    expect(w.observe({ work: true, progress: 10n }).state).toBe('stalled');
    c.advance(1);
    expect(w.observe({ work: true, progress: 10n })).toEqual({ state: 'exit', stalledMs: 300_000 });
  });

  it('any progress resets the stall clock, also from stalled', () => {
    const c = clock();
    const w = new ProgressWatchdog(limits, c.now);
    w.observe({ work: true, progress: 1n });
    c.advance(70_000);
    expect(w.observe({ work: true, progress: 1n }).state).toBe('stalled');
    c.advance(1_000);
    expect(w.observe({ work: true, progress: 2n })).toEqual({ state: 'progressing', stalledMs: 0 });
    c.advance(59_000);
    expect(w.observe({ work: true, progress: 2n }).state).toBe('waiting');
  });

  it('the stall clock starts when work appears, not at the last progress before an idle period', () => {
    const c = clock();
    const w = new ProgressWatchdog(limits, c.now);
    w.observe({ work: false, progress: 1n });
    c.advance(600_000);
    expect(w.observe({ work: true, progress: 1n })).toEqual({ state: 'waiting', stalledMs: 0 });
    c.advance(60_000);
    expect(w.observe({ work: true, progress: 1n }).state).toBe('stalled');
  });

  it('a failed sample counts as no progress when there was work, as idle when there was none', () => {
    const c = clock();
    const w = new ProgressWatchdog(limits, c.now);
    w.observe({ work: true, progress: 'a' });
    c.advance(61_000);
    expect(w.observeFailure().state).toBe('stalled');
    const idle = new ProgressWatchdog(limits, c.now);
    idle.observe({ work: false, progress: 'a' });
    c.advance(400_000);
    expect(idle.observeFailure().state).toBe('idle');
  });

  it('exitMs 0 never exits', () => {
    const c = clock();
    const w = new ProgressWatchdog({ unhealthyMs: 1000, exitMs: 0 }, c.now);
    w.observe({ work: true, progress: 0 });
    c.advance(10 ** 9);
    expect(w.observe({ work: true, progress: 0 }).state).toBe('stalled');
  });

  it('compares progress by value across types (bigint offsets, LSN/ack strings)', () => {
    const c = clock();
    const w = new ProgressWatchdog(limits, c.now);
    w.observe({ work: true, progress: '0/16B3748/10' });
    c.advance(61_000);
    expect(w.observe({ work: true, progress: '0/16B3748/10' }).state).toBe('stalled');
    expect(w.observe({ work: true, progress: '0/16B3748/11' }).state).toBe('progressing');
  });
});

describe('WatchdogRunner', () => {
  it('marks the watchdog condition unhealthy when stalled, calls onExit once at the exit limit, heals on progress', async () => {
    const c = clock();
    const registry = new Registry();
    const health = new HealthState(registry, undefined, c.now);
    let sample: WatchdogSample = { work: true, progress: 1n, detail: 'lag 7' };
    const exits: StalledError[] = [];
    const r = new WatchdogRunner({
      watchdog: new ProgressWatchdog({ unhealthyMs: 1000, exitMs: 5000 }, c.now), sample: async () => sample, intervalMs: 1_000_000,
      health, log: pino({ level: 'silent' }), onExit: (e) => exits.push(e),
    });
    r.start();
    await r.tick();
    expect(health.readiness().ready).toBe(true);
    c.advance(1500);
    await r.tick();
    const rd = health.readiness();
    expect(rd.ready).toBe(false);
    expect(rd.reasons[0]).toMatch(/^watchdog: no progress for 2 s with work pending \(lag 7\)/);
    expect(await registry.getSingleMetricAsString('health_condition')).toMatch(/health_condition\{condition="watchdog"\} 0/);
    c.advance(4000);
    await r.tick();
    await r.tick();
    expect(exits).toHaveLength(1);
    expect(exits[0]!.code).toBe('STALLED');
    sample = { work: true, progress: 2n };
    await r.tick();
    expect(health.readiness().ready).toBe(true);
    r.stop();
  });

  it('a throwing sample marks the probe condition and counts toward the stall', async () => {
    const c = clock();
    const health = new HealthState(undefined, undefined, c.now);
    let fail = false;
    const r = new WatchdogRunner({
      watchdog: new ProgressWatchdog({ unhealthyMs: 1000, exitMs: 0 }, c.now),
      sample: async () => { if (fail) throw new Error('connect ECONNREFUSED'); return { work: true, progress: 1n }; },
      intervalMs: 1_000_000, health, log: pino({ level: 'silent' }), onExit: () => {},
    });
    await r.tick();
    fail = true;
    c.advance(2000);
    await r.tick();
    const reasons = health.readiness().reasons.join(' | ');
    expect(reasons).toMatch(/probe: cannot read progress: connect ECONNREFUSED/);
    expect(reasons).toMatch(/watchdog: no progress/);
  });
});

describe('HealthState', () => {
  it('is ready only when every condition is healthy; setCondition is the hook for named conditions', async () => {
    const registry = new Registry();
    const h = new HealthState(registry);
    expect(h.readiness().ready).toBe(true);
    h.setCondition('retention-gap', { healthy: false, detail: 'orders/0: 10..99 lost' });
    h.setCondition('kafka-group', { healthy: true });
    expect(h.readiness()).toMatchObject({ ready: false, reasons: ['retention-gap: orders/0: 10..99 lost'] });
    expect(await registry.getSingleMetricAsString('health_ready')).toMatch(/health_ready 0/);
    h.setCondition('retention-gap', { healthy: true });
    expect(h.readiness().ready).toBe(true);
    expect(await registry.getSingleMetricAsString('health_ready')).toMatch(/health_ready 1/);
    h.setCondition('x', { healthy: false });
    h.clearCondition('x');
    expect(h.readiness().ready).toBe(true);
  });
});

describe('loadWatchdogConfig', () => {
  it('defaults to 60 s unhealthy, 300 s exit and refuses an exit limit below the unhealthy one', () => {
    expect(loadWatchdogConfig({})).toEqual({ unhealthyMs: 60_000, exitMs: 300_000, intervalMs: 5_000 });
    expect(loadWatchdogConfig({ WATCHDOG_UNHEALTHY_MS: '2000', WATCHDOG_EXIT_MS: '0' })).toEqual({ unhealthyMs: 2000, exitMs: 0, intervalMs: 500 });
    expect(() => loadWatchdogConfig({ WATCHDOG_UNHEALTHY_MS: '2000', WATCHDOG_EXIT_MS: '1000' })).toThrow(/WATCHDOG_EXIT_MS must be 0 or at least/);
  });
});

describe('ConsumerMetrics', () => {
  it('counts applied messages per topic, observes batch latency and reports freshness from the newest source commit', async () => {
    const { ConsumerMetrics } = await import('../../src/health/consumer-metrics.ts');
    let now = 1_000_000;
    const m = new ConsumerMetrics('g', () => now);
    m.batchApplied([{ topic: 'a', messages: 3, sourceMs: 990_000 }, { topic: 'b', messages: 2, sourceMs: null }], 0.02);
    m.batchApplied([{ topic: 'a', messages: 1, sourceMs: 980_000 }], 0.03);
    now = 1_005_000;
    const text = await m.registry.metrics();
    expect(text).toMatch(/consumer_messages_applied_total\{group="g",topic="a"\} 4/);
    expect(text).toMatch(/consumer_messages_applied_total\{group="g",topic="b"\} 2/);
    // The newest commit seen (990 000), not the last batch's older one.
    expect(text).toMatch(/consumer_freshness_seconds\{group="g",topic="a"\} 15\b/);
    expect(text).not.toMatch(/consumer_freshness_seconds\{group="g",topic="b"\}/);
    expect(text).toMatch(/consumer_batch_apply_seconds_count\{group="g"\} 2/);
    expect(text).toMatch(/consumer_batch_apply_seconds_sum\{group="g"\} 0\.05/);
  });
});
