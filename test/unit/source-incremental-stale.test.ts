import { describe, expect, it } from 'vitest';
import { chunkSnapshot, chunkSnapshotFromText, invisibleIn, staleXid } from '../../src/source/incremental-snapshot-window.ts';
import { RecentCommits } from '../../src/source/recent-commits.ts';

// The chunk's read ran with xid 500 in progress and xmax 510; LW committed at LSN 1000.
const snap = chunkSnapshot(['500'], '510');
const L = 1000n;

describe('stale chunk decision (xip + recent commits)', () => {
  it('an xip xid committed before LW makes the chunk stale; at or after LW it does not', () => {
    const before = new RecentCommits(8); before.record(500, 999n);
    expect(staleXid(snap, before, L)).toBe(500);
    const at = new RecentCommits(8); at.record(500, L);
    expect(staleXid(snap, at, L)).toBeNull();
    const after = new RecentCommits(8); after.record(500, 1001n);
    expect(staleXid(snap, after, L)).toBeNull();
  });

  it('an xid at or after xmax is invisible too (not listed in xip); a visible one before LW is fine', () => {
    const c = new RecentCommits(8); c.record(499, 900n); c.record(509, 950n);
    expect(staleXid(snap, c, L)).toBeNull();
    c.record(510, 960n);
    expect(staleXid(snap, c, L)).toBe(510);
  });

  it('an xip xid never streamed is not stale; an evicted one is no longer seen (the documented bound)', () => {
    const never = new RecentCommits(8); never.record(42, 900n);
    expect(staleXid(snap, never, L)).toBeNull();
    const ring = new RecentCommits(2); ring.record(500, 900n); ring.record(1, 901n); ring.record(2, 902n);
    expect(ring.evicted).toBe(1);
    expect(staleXid(snap, ring, L)).toBeNull();
  });

  it('xid8 values keep their low 32 bits and compare across the 2^32 wrap', () => {
    const s = chunkSnapshot([String((3n << 32n) | 7n)], String((2n << 32n) | 0xfffffff0n));
    expect(s.xip.has(7)).toBe(true);
    expect(invisibleIn(s, 5)).toBe(true); // after the wrap: later than xmax
    expect(invisibleIn(s, 0xffffffe0)).toBe(false);
  });
});

describe('chunkSnapshotFromText', () => {
  it('reads pg_current_snapshot()::text, with and without in-progress xids', () => {
    const a = chunkSnapshotFromText('745:750:745,748');
    expect([...a.xip]).toEqual([745, 748]);
    expect(a.xmax).toBe(750);
    expect(invisibleIn(a, 748)).toBe(true);
    expect(invisibleIn(a, 747)).toBe(false);
    expect(invisibleIn(a, 750)).toBe(true);
    expect(chunkSnapshotFromText('750:750:').xip.size).toBe(0);
    expect(() => chunkSnapshotFromText('nonsense')).toThrow(/not a pg_snapshot/);
  });
});
