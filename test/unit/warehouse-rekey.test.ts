import { describe, expect, it } from 'vitest';
import { rekeyFrom } from '../../consumers/warehouse/recompute.ts';

// Start dates (µs) of a customer's SCD2 versions before and after a batch.
describe('rekeyFrom: which orders a change of versions can re-key', () => {
  it('nothing when the set of starts is the same (an email change, a moved expiration)', () => {
    expect(rekeyFrom('1', [10n, 20n], [20n, 10n])).toBeNull();
    expect(rekeyFrom('1', [], [])).toBeNull();
  });

  it('orders from the earliest start that came or went, when the first start stays', () => {
    expect(rekeyFrom('1', [10n, 20n], [10n, 20n, 30n])).toEqual({ customerId: '1', fromUs: 30n });
    expect(rekeyFrom('1', [10n, 20n, 30n], [10n, 25n, 30n])).toEqual({ customerId: '1', fromUs: 20n });
    expect(rekeyFrom('1', [10n, 20n], [10n])).toEqual({ customerId: '1', fromUs: 20n });
  });

  it('every order when the first start changes or the customer gains or loses all versions', () => {
    expect(rekeyFrom('1', [10n, 20n], [5n, 10n, 20n])).toEqual({ customerId: '1', fromUs: null });
    expect(rekeyFrom('1', [10n, 20n], [20n])).toEqual({ customerId: '1', fromUs: null });
    expect(rekeyFrom('1', [], [10n])).toEqual({ customerId: '1', fromUs: null });
    expect(rekeyFrom('1', [10n], [])).toEqual({ customerId: '1', fromUs: null });
  });
});
