import type { Lsn } from './lsn.ts';

/**
 * How many streamed commits the capture remembers (xid and commit LSN), for
 * the incremental snapshot's visibility check (ChunkWindow / staleXid). A
 * transaction that committed this many transactions before a chunk's low
 * watermark and is still not visible to the chunk's read is not detected;
 * see docs/capture.md ("A transaction committed but not yet visible").
 * Fixed memory: 65536 × (4 + 8) bytes = 768 KiB.
 */
export const RECENT_COMMITS = 65_536;

/**
 * A ring of the last `capacity` transactions the stream committed, in stream
 * (= commit) order. Typed arrays rather than objects: one entry is written
 * for every streamed transaction, and a scan at a high watermark reads them
 * all without allocating.
 */
export class RecentCommits {
  private readonly xids: Uint32Array;
  private readonly lsns: BigUint64Array;
  /** Entries ever recorded; the ring holds the last min(total, capacity). */
  private total = 0;

  constructor(readonly capacity: number = RECENT_COMMITS) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`recent commits capacity must be a positive integer, got ${capacity}`);
    this.xids = new Uint32Array(capacity);
    this.lsns = new BigUint64Array(capacity);
  }

  /** A transaction's commit as the stream delivered it (pgoutput BEGIN's xid, its commit LSN). */
  record(xid: number, commitLsn: Lsn): void {
    const i = this.total % this.capacity;
    this.xids[i] = xid;
    this.lsns[i] = commitLsn;
    this.total += 1;
  }

  /** Entries recorded and since overwritten (the record no longer covers them). */
  get evicted(): number {
    return Math.max(0, this.total - this.capacity);
  }

  get size(): number {
    return Math.min(this.total, this.capacity);
  }

  /** The first xid, newest first, among commits before `lsn`, for which `match` is true; null if none. */
  findBefore(lsn: Lsn, match: (xid: number) => boolean): number | null {
    const n = this.size;
    for (let k = 1; k <= n; k++) {
      const i = (this.total - k) % this.capacity;
      if (this.lsns[i]! < lsn && match(this.xids[i]!)) return this.xids[i]!;
    }
    return null;
  }
}
