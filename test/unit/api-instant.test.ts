import { describe, expect, it } from 'vitest';
import { canonicalInstantUs, NowClock, readInstant } from '../../src/api/instant.ts';
import { readAsOf } from '../../src/api/params.ts';
import { formatInstantUs, parseInstantUs } from '../../src/transforms/time.ts';

/** What the lookup path did before the shortcut: the general parser, then the canonical rendering. */
function general(text: string) {
  const us = parseInstantUs(text);
  return us === undefined ? undefined : { us, text: formatInstantUs(us) };
}

describe('canonicalInstantUs / readInstant', () => {
  it('agrees with the general parser on canonical text over the whole 4-digit year range', () => {
    // xorshift32 over µs from 0000-01-01 to 9999-12-31: leap days, centuries and negative epochs included.
    const lo = parseInstantUs('0000-01-01T00:00:00Z')!;
    const span = parseInstantUs('9999-12-31T23:59:59.999999Z')! - lo;
    let x = 0x2545f491;
    for (let i = 0; i < 5_000; i++) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      let y = x ^ 0x5bd1e995; y ^= y << 13; y ^= y >>> 17; y ^= y << 5;
      const us = lo + ((BigInt(x >>> 0) << 32n) | BigInt(y >>> 0)) % span;
      const text = formatInstantUs(us);
      expect(canonicalInstantUs(text), text).toBe(us);
      expect(readInstant(text)).toEqual({ us, text });
    }
  });

  it.each([
    '2024-02-29T00:00:00.000000Z', '2000-02-29T23:59:59.999999Z', '1970-01-01T00:00:00.000000Z',
    '1969-12-31T23:59:59.999999Z', '0000-01-01T00:00:00.000000Z', '9999-12-31T00:00:00.000000Z',
  ])('reads the edge %s exactly', (text) => {
    expect(canonicalInstantUs(text)).toBe(parseInstantUs(text));
  });

  it.each([
    '2023-02-29T00:00:00.000000Z', '1900-02-29T00:00:00.000000Z', '2024-04-31T00:00:00.000000Z', '2024-13-01T00:00:00.000000Z',
    '2024-01-01T24:00:00.000000Z', '2024-01-01T23:60:00.000000Z', '2024-06-30T23:59:60.000000Z',
    '2024-01-01T12:00:00.123456+00:00', '2024-01-01T12:00:00.123Z', '2024-01-01 12:00:00.123456Z', '2024-01-01T12:00:00.12345xZ',
    '2024-01-01T12:00:00Z', '+2024-01-01T12:00:00.12345Z', '', 'not an instant at all, no...',
  ])('leaves %j to the general parser, with the same result as before', (text) => {
    expect(canonicalInstantUs(text)).toBeUndefined();
    expect(readInstant(text)).toEqual(general(text));
  });

  it('renders a non-canonical instant canonically (offset, ms precision)', () => {
    expect(readInstant('2024-01-01T13:00:00.5+01:00')).toEqual({ us: parseInstantUs('2024-01-01T12:00:00.5Z'), text: '2024-01-01T12:00:00.500000Z' });
    expect(readInstant('2024-01-01T12:00:00.123Z')?.text).toBe('2024-01-01T12:00:00.123000Z');
  });
});

describe('NowClock / readAsOf', () => {
  it('gives the current millisecond as µs and canonical text, recomputed when the clock moves', () => {
    let now = Date.parse('2024-03-01T00:00:00.123Z');
    const clock = new NowClock(() => now);
    expect(clock.read()).toEqual({ us: 1709251200123000n, text: '2024-03-01T00:00:00.123000Z' });
    expect(clock.read().text).toBe('2024-03-01T00:00:00.123000Z');
    now += 1;
    expect(clock.read()).toEqual({ us: 1709251200124000n, text: '2024-03-01T00:00:00.124000Z' });
  });

  it('uses the clock only when as_of is absent', () => {
    const clock = new NowClock(() => 0);
    expect(readAsOf(undefined, clock)).toEqual({ us: 0n, text: '1970-01-01T00:00:00.000000Z' });
    expect(readAsOf('2024-05-01T02:00:00.000001+02:00', clock)).toEqual({ us: parseInstantUs('2024-05-01T00:00:00.000001Z'), text: '2024-05-01T00:00:00.000001Z' });
    expect(() => readAsOf('yesterday', clock)).toThrow(/as_of/);
  });
});
