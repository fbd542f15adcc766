import { expect, it } from 'vitest';
import { LogThrottle } from '../../src/api/log-throttle.ts';

it('LogThrottle admits one line per key per interval and counts what it held back', () => {
  let now = 0;
  const t = new LogThrottle(10_000, () => now);
  expect(t.admit('A')).toBe(0);
  expect(t.admit('A')).toBeUndefined();
  expect(t.admit('A')).toBeUndefined();
  expect(t.admit('B')).toBe(0);
  now = 9_999;
  expect(t.admit('A')).toBeUndefined();
  now = 10_000;
  expect(t.admit('A')).toBe(3);
  expect(t.admit('A')).toBeUndefined();
  now = 30_000;
  expect(t.admit('A')).toBe(1);
  expect(t.admit('B')).toBe(0);
});
