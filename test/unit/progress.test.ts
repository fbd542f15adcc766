import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { formatDuration, Progress, renderBar } from '../../src/util/progress.ts';

/** A pino logger writing JSON lines into an array, and a terminal-like sink recording writes. */
function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const dest = new Writable({ write(chunk, _enc, cb) {
    for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
    cb();
  } });
  const log = pino({ level: 'info' }, dest);
  const writes: string[] = [];
  const term = { isTTY: true, write: (s: string) => writes.push(s) };
  return { lines, log, writes, term };
}

describe('progress helpers', () => {
  it('formats durations as m:ss or h:mm:ss, unknown as ?', () => {
    expect(formatDuration(0)).toBe('0:00');
    expect(formatDuration(75)).toBe('1:15');
    expect(formatDuration(3725)).toBe('1:02:05');
    expect(formatDuration(null)).toBe('?');
    expect(formatDuration(Infinity)).toBe('?');
  });

  it('fills the bar in proportion, clamps overshoot, and shows nothing-to-do as full', () => {
    expect(renderBar(0, 10, 10)).toBe('[..........]');
    expect(renderBar(5, 10, 10)).toBe('[#####.....]');
    expect(renderBar(15, 10, 10)).toBe('[##########]');
    expect(renderBar(0, 0, 4)).toBe('[####]');
  });
});

describe('Progress', () => {
  it('on a terminal redraws one line in place with percent, counts, rate and ETA, at most every 100 ms', () => {
    const { log, writes, term } = capture();
    let t = 1_000_000;
    const p = new Progress({ label: 'replay', unit: 'messages', total: 1000, stream: term, log, width: 10, now: () => t });
    t += 1000;
    p.update(100);
    t += 50;
    p.update(150); // within 100 ms of the last redraw: not drawn
    t += 950;
    p.update(200);
    expect(writes).toHaveLength(2);
    expect(writes[0]).toMatch(/^\rreplay \[#\.{9}\] 10% 100\/1000 messages 100\/s ETA 0:09 elapsed 0:01\x1b\[K$/);
    // 200 done in 2 s: 100/s, 800 left -> 8 s.
    expect(writes[1]).toContain('20% 200/1000 messages 100/s ETA 0:08');
    p.finish('caught up');
    p.finish('twice'); // no second final line
    expect(writes).toHaveLength(3);
    expect(writes[2]).toMatch(/\nreplay: caught up\n$/);
  });

  it('off a terminal writes pino lines no more often than the interval, with numeric fields, and a final line', () => {
    const { lines, log } = capture();
    let t = 0;
    const sink = { isTTY: false, write: () => { throw new Error('must not write to a non-terminal stream'); } };
    const p = new Progress({ label: 'replay', unit: 'messages', total: 500, stream: sink, log, logIntervalMs: 2000, now: () => t });
    for (let i = 1; i <= 50; i++) {
      t += 100;
      p.update(i * 10);
    }
    // 5 s of updates every 100 ms: lines at t=100, 2100, 4100.
    expect(lines.map((l) => l.done)).toEqual([10, 210, 410]);
    expect(lines[1]).toMatchObject({ label: 'replay', total: 500, rate: 100, etaSeconds: 3, msg: 'replay: 210/500 messages' });
    p.finish('swapped');
    expect(lines.at(-1)).toMatchObject({ done: 500, etaSeconds: 0, msg: 'replay: swapped' });
    p.update(600); // after finish: ignored
    expect(lines).toHaveLength(4);
  });

  it('measures the rate over the recent window, so a slow start does not skew the ETA', () => {
    const { log, term } = capture();
    let t = 0;
    const p = new Progress({ label: 'r', total: 100_000, stream: term, log, now: () => t });
    t = 30_000; // 30 s joining the group, nothing consumed
    p.update(0);
    for (let i = 1; i <= 20; i++) {
      t += 1000;
      p.update(i * 1000);
    }
    const s = p.state();
    expect(s.rate).toBeCloseTo(1000, 0);
    expect(s.etaSeconds).toBeCloseTo(80, 0);
    expect(s.total).toBe(100_000);
    p.update(20_000, 40_000); // total may be raised (more partitions, a new end offset)
    expect(p.state().etaSeconds).toBeCloseTo(20, 0);
  });

  it('has no ETA before any progress, and ETA 0 when nothing is left', () => {
    const { log, term } = capture();
    let t = 0;
    const p = new Progress({ label: 'r', total: 10, stream: term, log, now: () => t });
    t = 5000;
    p.update(0);
    expect(p.state().etaSeconds).toBeNull();
    const q = new Progress({ label: 'r', total: 0, stream: term, log, now: () => t });
    expect(q.state().etaSeconds).toBe(0);
  });
});
