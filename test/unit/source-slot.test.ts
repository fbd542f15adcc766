import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { SourceNotReadyError } from '../../src/errors.ts';
import { checkIdent, checkSource } from '../../src/source/slot.ts';

// wal_level cannot be changed on the shared test cluster without a restart, so
// the message for a non-logical source is checked against a canned row here.
const source = (row: Record<string, unknown>) => ({ query: async () => ({ rows: [row] }) }) as unknown as pg.Pool;

describe('source preconditions', () => {
  it('explains how to fix wal_level', async () => {
    const err = await checkSource(source({ wal_level: 'replica', can_replicate: true, max_slots: '10' })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SourceNotReadyError);
    expect((err as Error).message).toMatch(/wal_level is "replica".*wal_level = logical/);
  });
  it('explains a missing REPLICATION attribute and no slots', async () => {
    await expect(checkSource(source({ wal_level: 'logical', can_replicate: false, max_slots: '10' }))).rejects.toThrow(/ALTER ROLE .* WITH REPLICATION/);
    await expect(checkSource(source({ wal_level: 'logical', can_replicate: true, max_slots: '0' }))).rejects.toThrow(/max_replication_slots/);
    await expect(checkSource(source({ wal_level: 'logical', can_replicate: true, max_slots: '10' }))).resolves.toBeUndefined();
  });
  it('accepts only plain identifiers for slot and publication names', () => {
    expect(checkIdent('slot', 'shop_cdc')).toBe('shop_cdc');
    expect(() => checkIdent('slot', 'shop"; drop')).toThrow(SourceNotReadyError);
  });
});
