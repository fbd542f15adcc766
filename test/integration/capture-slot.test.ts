import { afterEach, describe, expect, it } from 'vitest';
import { createHarness, startInProcess, waitFor, type Harness } from '../../bench/capture/harness.ts';
import { SourceNotReadyError } from '../../src/errors.ts';
import type { CaptureService } from '../../src/source/capture.ts';
import { parseLsn } from '../../src/source/lsn.ts';
import { uniqueId } from '../helpers/stack-env.ts';

/** Slot/publication preconditions and WAL release on an idle (filtered) database. */
let h: Harness | undefined;
let cap: CaptureService | undefined;
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  await cap?.stop().catch(() => {});
  for (const c of cleanups.splice(0)) await c().catch(() => {});
  await h?.cleanup();
  cap = undefined;
  h = undefined;
});

async function startExpectingError(cfg: ReturnType<Harness['config']>): Promise<unknown> {
  try {
    cap = await startInProcess(cfg);
  } catch (err) {
    return err;
  }
  return null;
}

describe('capture: slot and publication management', () => {
  it('refuses a role without REPLICATION with a clear SourceNotReadyError', async () => {
    h = await createHarness(uniqueId('cap_role'));
    const role = `${h.id}_ro`;
    await h.pool.query(`CREATE ROLE ${role} LOGIN NOREPLICATION`);
    cleanups.push(() => h!.pool.query(`DROP ROLE IF EXISTS ${role}`));
    const url = new URL(h.config().sourceUrl);
    url.username = role;
    const err = await startExpectingError(h.config({ SOURCE_DATABASE_URL: url.toString() }));
    expect(err).toBeInstanceOf(SourceNotReadyError);
    expect((err as Error).message).toMatch(/lacks the REPLICATION attribute/);
  });

  it('refuses a slot with another plugin and a publication missing a table', async () => {
    h = await createHarness(uniqueId('cap_mism'));
    const other = `${h.id}_td`;
    await h.pool.query("SELECT pg_create_logical_replication_slot($1, 'test_decoding')", [other]);
    cleanups.push(() => h!.pool.query('SELECT pg_drop_replication_slot($1)', [other]));
    const err1 = await startExpectingError(h.config({ CAPTURE_SLOT: other }));
    expect(err1).toBeInstanceOf(SourceNotReadyError);
    expect((err1 as Error).message).toMatch(/plugin test_decoding/);

    await h.pool.query(`CREATE TABLE ${h.id}.extra (id int PRIMARY KEY)`);
    const err2 = await startExpectingError(h.config());
    expect(err2).toBeInstanceOf(SourceNotReadyError);
    expect((err2 as Error).message).toMatch(new RegExp(`does not include ${h.id}\\.extra`));
  });

  it('creates a missing publication and slot, and releases WAL while no captured table changes', async () => {
    h = await createHarness(uniqueId('cap_idle'));
    const s = h.id;
    await h.pool.query(`DROP PUBLICATION ${s}`);
    cap = await startInProcess(h.config({ CAPTURE_SNAPSHOT: 'never', CAPTURE_HEARTBEAT_MS: '500' }));
    const { rows: pubs } = await h.pool.query("SELECT count(*)::int AS n FROM pg_publication_tables WHERE pubname = $1", [s]);
    expect(pubs[0].n).toBe(4);
    // Write WAL that the slot filters out (a table outside the publication).
    await h.pool.query(`CREATE TABLE ${s}_meta.noise (id serial PRIMARY KEY, pad text)`);
    await h.pool.query(`INSERT INTO ${s}_meta.noise (pad) SELECT repeat('x', 200) FROM generate_series(1, 5000)`);
    const { rows } = await h.pool.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l');
    const after = parseLsn(rows[0]!.l);
    const confirmed = await waitFor('slot to pass the filtered WAL', async () => {
      const r = await h!.pool.query<{ l: string }>('SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = $1', [s]);
      const c = parseLsn(r.rows[0]!.l);
      return c >= after ? c : null;
    }, 30_000);
    expect(confirmed >= after).toBe(true);
  });
});
