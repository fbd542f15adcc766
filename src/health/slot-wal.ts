import type pg from 'pg';
import { parseLsn } from '../source/lsn.ts';

/** A replication slot's hold on the WAL, as pg_replication_slots shows it. */
export interface SlotWal {
  slot: string;
  active: boolean;
  activePid: number | null;
  currentLsn: bigint;
  confirmedLsn: bigint | null;
  restartLsn: bigint | null;
  /** WAL the server keeps for the slot: current WAL LSN − restart_lsn. */
  retainedBytes: bigint;
  /** WAL not yet confirmed by the capture: current WAL LSN − confirmed_flush_lsn. */
  unconfirmedBytes: bigint;
  /** reserved / extended / unreserved / lost (lost: the slot was invalidated by max_slot_wal_keep_size). */
  walStatus: string | null;
  /** Bytes the slot may still fall behind before it is invalidated; null without max_slot_wal_keep_size. */
  safeWalSize: bigint | null;
}

export async function readSlotWal(client: pg.Pool | pg.ClientBase, slot: string): Promise<SlotWal | null> {
  const { rows } = await client.query<{ cur: string; conf: string | null; rst: string | null; active: boolean; active_pid: number | null; wal_status: string | null; safe: string | null }>(
    `SELECT pg_current_wal_lsn()::text AS cur, confirmed_flush_lsn::text AS conf, restart_lsn::text AS rst,
            active, active_pid, wal_status, safe_wal_size::text AS safe
       FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
  const r = rows[0];
  if (!r) return null;
  const cur = parseLsn(r.cur);
  const conf = r.conf ? parseLsn(r.conf) : null;
  const rst = r.rst ? parseLsn(r.rst) : null;
  const behind = (l: bigint | null) => (l === null || l >= cur ? 0n : cur - l);
  return {
    slot, active: r.active, activePid: r.active_pid, currentLsn: cur, confirmedLsn: conf, restartLsn: rst,
    retainedBytes: behind(rst), unconfirmedBytes: behind(conf), walStatus: r.wal_status, safeWalSize: r.safe === null ? null : BigInt(r.safe),
  };
}

/** 1536 → "1.5 KiB". */
export function formatBytes(n: bigint | number): string {
  let v = Number(n);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}
