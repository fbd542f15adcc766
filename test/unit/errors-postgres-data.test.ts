import { describe, expect, it } from 'vitest';
import { isPostgresDataError } from '../../src/errors.ts';

describe('isPostgresDataError', () => {
  it('treats data exceptions, integrity violations and program limits as the message\'s fault', () => {
    for (const code of ['22003', '22007', '23505', '23502', '54000']) expect(isPostgresDataError({ code })).toBe(true);
  });
  it('treats connection, lock and resource errors as retriable outages, not bad data', () => {
    for (const code of ['08006', '40001', '40P01', '53300', '57P01', 'XX000']) expect(isPostgresDataError({ code })).toBe(false);
    expect(isPostgresDataError(new Error('ECONNREFUSED'))).toBe(false);
    expect(isPostgresDataError(undefined)).toBe(false);
  });
});
