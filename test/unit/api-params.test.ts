import { describe, expect, it } from 'vitest';
import { bearerChecker } from '../../src/api/auth.ts';
import { ApiError } from '../../src/api/errors.ts';
import { parseAsOf, parseCustomerId, parseTopQuery } from '../../src/api/params.ts';
import { parseInstantUs } from '../../src/transforms/time.ts';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof ApiError) return `${err.status} ${err.code}`;
    throw err;
  }
  return undefined;
}

describe('parseCustomerId', () => {
  it('accepts 0..2^63-1 and canonicalises', () => {
    expect(parseCustomerId('42')).toBe('42');
    expect(parseCustomerId('0')).toBe('0');
    expect(parseCustomerId('007')).toBe('7');
    expect(parseCustomerId('9223372036854775807')).toBe('9223372036854775807');
  });

  it('canonicalises like BigInt on both sides of the 18-digit shortcut', () => {
    for (const raw of ['000', '0000000000000000001', '099999999999999999', '99999999999999999', '0000009223372036854775807', '123456789012345678']) {
      expect(parseCustomerId(raw), raw).toBe(BigInt(raw).toString());
    }
  });

  it.each(['-1', '+1', '1.5', '1e3', 'abc', '', ' 1', '0x10', '9223372036854775808', '99999999999999999999999999'])(
    'refuses %j with 400 INVALID_CUSTOMER_ID',
    (raw) => {
      expect(codeOf(() => parseCustomerId(raw))).toBe('400 INVALID_CUSTOMER_ID');
    },
  );
});

describe('parseAsOf', () => {
  const now = 1_700_000_000_000_000n;
  it('defaults to now', () => {
    expect(parseAsOf(undefined, now)).toBe(now);
  });

  it('reads instants with an offset, to the microsecond, and bare dates as UTC midnight', () => {
    expect(parseAsOf('2024-05-01T00:00:00Z', now)).toBe(parseInstantUs('2024-05-01T00:00:00Z'));
    expect(parseAsOf('2024-05-01T02:00:00+02:00', now)).toBe(parseInstantUs('2024-05-01T00:00:00Z'));
    expect(parseAsOf('2024-05-01T00:00:00.000001Z', now)).toBe(parseInstantUs('2024-05-01T00:00:00Z')! + 1n);
    expect(parseAsOf('2024-05-01', now)).toBe(parseInstantUs('2024-05-01T00:00:00Z'));
  });

  it.each(['yesterday', '2024-05-01T00:00:00', '2024-13-01T00:00:00Z', '2024-02-30', '2024-05-01T25:00:00Z', '', '1714521600'])(
    'refuses %j with 400 INVALID_AS_OF',
    (raw) => {
      expect(codeOf(() => parseAsOf(raw, now))).toBe('400 INVALID_AS_OF');
    },
  );

  it('refuses a repeated as_of (an array from the query parser)', () => {
    expect(codeOf(() => parseAsOf(['2024-05-01', '2024-05-02'], now))).toBe('400 INVALID_AS_OF');
  });
});

describe('parseTopQuery', () => {
  it('defaults to revenue and 10', () => {
    expect(parseTopQuery({})).toEqual({ by: 'revenue', limit: 10 });
    expect(parseTopQuery({ by: 'items', limit: '1000' })).toEqual({ by: 'items', limit: 1000 });
    expect(parseTopQuery({ by: 'orders', limit: '1' })).toEqual({ by: 'orders', limit: 1 });
  });

  it.each([{ by: 'margin' }, { limit: '0' }, { limit: '1001' }, { limit: '-5' }, { limit: '2.5' }, { limit: 'ten' }, { by: ['revenue', 'orders'] }])(
    'refuses %j with 400 INVALID_QUERY',
    (q) => {
      expect(codeOf(() => parseTopQuery(q))).toBe('400 INVALID_QUERY');
    },
  );
});

describe('bearerChecker', () => {
  const check = bearerChecker('s3cret-token-0123456789');
  it('accepts exactly the configured token', () => {
    expect(check('Bearer s3cret-token-0123456789')).toBe(true);
    expect(check('bearer s3cret-token-0123456789')).toBe(true);
  });
  it.each([undefined, '', 'Bearer', 'Bearer ', 'Bearer s3cret-token-012345678', 'Bearer s3cret-token-01234567890', 'Basic s3cret-token-0123456789', 's3cret-token-0123456789', 'Bearer s3cret-token-0123456789 extra'])(
    'refuses %j',
    (header) => {
      expect(check(header)).toBe(false);
    },
  );
});
