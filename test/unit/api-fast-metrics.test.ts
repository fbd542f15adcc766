import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { FastCounter, FastHistogram } from '../../src/api/fast-metrics.ts';

/** The fast series must render exactly as prom-client's own metrics given the same events. */
describe('fast metrics', () => {
  it('render the same exposition text as prom-client Counter and Histogram', async () => {
    const buckets = [0.0005, 0.001, 0.002, 0.005, 0.01, 2.5];
    const ours = new Registry();
    const theirs = new Registry();
    const c1 = new FastCounter('t_requests_total', 'help "quoted" \\ text', ['method', 'status'], ours);
    const h1 = new FastHistogram('t_seconds', 'latency', ['method', 'status'], buckets, ours);
    const c2 = new Counter({ name: 't_requests_total', help: 'help "quoted" \\ text', labelNames: ['method', 'status'], registers: [theirs] });
    const h2 = new Histogram({ name: 't_seconds', help: 'latency', labelNames: ['method', 'status'], buckets, registers: [theirs] });

    const values = [0, 0.0005, 0.00051, 0.001, 0.0019, 0.004, 0.02, 2.5, 3, 100, 1e-9];
    let x = 7;
    for (let i = 0; i < 2_000; i++) {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      const labels = { method: i % 3 === 0 ? 'GET' : 'POST', status: ['200', '404', 'a"b\\c\nd'][x % 3]! };
      const v = values[x % values.length]! * (1 + (i % 7) / 10);
      c1.series(labels).value++;
      c2.inc(labels);
      h1.series(labels).observe(v);
      h2.observe(labels, v);
    }
    const text = await ours.metrics();
    expect(text).toBe(await theirs.metrics());
    expect(text).toMatch(/t_seconds_count\{method="GET",status="200"\} \d+/);
  });

  it('exports a series created without events at 0', async () => {
    const r = new Registry();
    new FastCounter('t_total', 'h', ['result'], r).series({ result: 'hit' });
    expect(await r.metrics()).toContain('t_total{result="hit"} 0');
  });
});
