import { describe, expect, it } from 'vitest';
import { CliProgress, formatDuration, formatLine } from '../../src/cli/progress.ts';

/** A sink recording writes, terminal or not. */
function sink(isTTY: boolean) {
  const writes: string[] = [];
  return { writes, stream: { isTTY, write: (c: string) => { writes.push(c); return true; } } };
}

describe('CliProgress off a terminal: plain periodic lines', () => {
  it('prints a line at most every intervalMs with count, percentage, windowed rate and ETA, then a final line', () => {
    let t = 0;
    const { writes, stream } = sink(false);
    const p = new CliProgress({ label: 'replay', unit: 'messages', total: 1000, stream, intervalMs: 2000, now: () => t });
    t = 1000; p.update(100);
    t = 1500; p.update(150); // within the interval: no line
    t = 3000; p.update(300);
    expect(writes).toEqual([
      'replay: 100/1000 messages (10%), 100/s, ETA 0:09, elapsed 0:01\n',
      'replay: 300/1000 messages (30%), 100/s, ETA 0:07, elapsed 0:03\n',
    ]);
    t = 5000; p.finish('swapped in');
    p.finish('again');
    expect(writes[2]).toBe('replay: swapped in: 300/1000 messages in 0:05 (60/s)\n');
    expect(writes).toHaveLength(3);
    expect(writes.join('')).not.toContain('\r');
  });

  it('follows the current speed over a 10 s window, not the average since the start', () => {
    let t = 0;
    const p = new CliProgress({ label: 'x', unit: 'rows', total: 10_000, stream: sink(false).stream, now: () => t });
    t = 60_000; p.update(60); // a slow start: 1/s
    for (let i = 1; i <= 10; i++) { t = 60_000 + i * 1000; p.update(60 + i * 500); }
    const s = p.state();
    expect(s.rate).toBeGreaterThanOrEqual(500);
    expect(s.etaSeconds).toBeCloseTo((10_000 - 5060) / s.rate, 5);
  });

  it('shows count and rate only when the total is unknown, and takes a total later', () => {
    let t = 0;
    const { writes, stream } = sink(false);
    const p = new CliProgress({ label: 'snapshot', unit: 'rows', total: null, stream, intervalMs: 0, now: () => t });
    t = 2000; p.update(40);
    expect(writes[0]).toBe('snapshot: 40 rows, 20/s, elapsed 0:02\n');
    t = 4000; p.update(80, 100);
    expect(writes[1]).toBe('snapshot: 80/100 rows (80%), 20/s, ETA 0:01, elapsed 0:04\n');
  });
});

describe('CliProgress on a terminal: a cli-progress bar', () => {
  it('redraws one line in place with bar, percentage, rate and ETA, and ends it with the final line', () => {
    const { writes, stream } = sink(true);
    let t = 0;
    const p = new CliProgress({ label: 'redis rebuild', unit: 'rows', total: 200, stream, now: () => t });
    t = 1000; p.update(50);
    p.finish('done');
    const out = writes.join('');
    // Our windowed rate and ETA, not cli-progress's own `eta` token.
    expect(out).toMatch(/redis rebuild \[[=-]+\] 25% 50\/200 rows 50\/s ETA 0:03 elapsed 0:01/);
    expect(out).toMatch(/redis rebuild: done: 50\/200 rows in 0:01 \(50\/s\)\n$/);
  });
});

describe('formatting', () => {
  it('durations and lines', () => {
    expect(formatDuration(75)).toBe('1:15');
    expect(formatDuration(3725)).toBe('1:02:05');
    expect(formatDuration(null)).toBe('?');
    expect(formatLine('v', 'checks', { done: 0, total: 0, rate: 0, etaSeconds: 0, elapsedSeconds: 0 })).toBe('v: 0/0 checks (100%), 0/s, ETA 0:00, elapsed 0:00');
  });
});
