import type { Lsn } from './lsn.ts';

/**
 * Decides how far the replication slot may be confirmed. Transactions arrive
 * from pgoutput whole and in commit order; each of their events is handed to
 * Kafka and acknowledged later, possibly out of order across partitions. The
 * slot may only move to the end LSN of the last transaction such that it and
 * every earlier transaction are committed (Commit message seen) and have no
 * event left unacknowledged. Anything past that could be lost in a crash.
 */
export interface TxTicket {
  outstanding: number;
  endLsn: Lsn | null;
}

export class Acker {
  private readonly queue: TxTicket[] = [];
  private head = 0;
  private current: TxTicket | null = null;
  private _confirmed: Lsn;
  private listeners: ((lsn: Lsn) => void)[] = [];

  constructor(startLsn: Lsn) {
    this._confirmed = startLsn;
  }

  /** The highest LSN that is safe to report to Postgres as flushed. */
  get confirmed(): Lsn {
    return this._confirmed;
  }

  /** Transactions received but not yet fully acknowledged (for metrics and tests). */
  get pendingTransactions(): number {
    return this.queue.length - this.head + (this.current ? 1 : 0);
  }

  onAdvance(fn: (lsn: Lsn) => void): void {
    this.listeners.push(fn);
  }

  begin(): TxTicket {
    if (this.current) throw new Error('acker: begin inside an open transaction');
    this.current = { outstanding: 0, endLsn: null };
    return this.current;
  }

  /** One more event of the open transaction was handed to the producer. */
  track(): TxTicket {
    const t = this.current;
    if (!t) throw new Error('acker: event outside a transaction');
    t.outstanding += 1;
    return t;
  }

  /** Kafka acknowledged `n` events of `t`. */
  done(t: TxTicket, n = 1): void {
    t.outstanding -= n;
    if (t.outstanding < 0) throw new Error('acker: more acknowledgements than events');
    if (t.outstanding === 0 && t.endLsn !== null) this.advance();
  }

  commit(endLsn: Lsn): void {
    const t = this.current;
    if (!t) throw new Error('acker: commit without begin');
    this.current = null;
    t.endLsn = endLsn;
    this.queue.push(t);
    this.advance();
  }

  /**
   * The server reports it has sent everything up to `lsn` (a keepalive's
   * WAL end, or a heartbeat message outside any transaction). If nothing is
   * open or unacknowledged, every change before `lsn` is in Kafka, so the
   * slot may move there: this is what keeps an idle or filtered database
   * from retaining WAL.
   */
  idle(lsn: Lsn): void {
    if (this.current || this.head < this.queue.length) return;
    this.set(lsn);
  }

  private advance(): void {
    let moved: Lsn | null = null;
    while (this.head < this.queue.length) {
      const t = this.queue[this.head]!;
      if (t.outstanding > 0 || t.endLsn === null) break;
      moved = t.endLsn;
      this.head += 1;
    }
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    if (moved !== null) this.set(moved);
  }

  private set(lsn: Lsn): void {
    if (lsn <= this._confirmed) return;
    this._confirmed = lsn;
    for (const fn of this.listeners) fn(lsn);
    if (this.waiters.length > 0) {
      const still: typeof this.waiters = [];
      for (const w of this.waiters) (w.lsn <= lsn ? w.resolve() : still.push(w));
      this.waiters = still;
    }
  }

  private waiters: { lsn: Lsn; resolve: () => void }[] = [];

  /** Resolves once the slot may be confirmed at `lsn` (or `signal` aborts). */
  whenConfirmed(lsn: Lsn, signal: AbortSignal): Promise<void> {
    if (this._confirmed >= lsn || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const onAbort = () => resolve();
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push({ lsn, resolve: () => { signal.removeEventListener('abort', onAbort); resolve(); } });
    });
  }
}
