import type { KafkaMessage } from 'kafkajs';

/**
 * How many messages go into one Postgres transaction. A transaction's cost
 * is part fixed (round trips, planning, the lock, the commit) and part per
 * message, and an order changed several times in one transaction is
 * recomputed once, so a waiting backlog drains cheapest in large
 * transactions; a live stream wants small ones, since a message waits for
 * its whole transaction. So the size follows a time budget, from the
 * measured apply time per message: `liveBudgetMs` when nothing more waits
 * behind the fetched batch, `backlogBudgetMs` when it does (well under the
 * session timeout: the member heartbeats between transactions), split
 * among the partitions being handled at once (they commit together), and
 * always within `maxMessages` / `maxBytes`.
 */
export interface TxSizerOptions {
  maxMessages: number;
  maxBytes: number;
  liveBudgetMs: number;
  backlogBudgetMs: number;
  /** Never fewer than this per slice (unless the cap is lower): the fixed cost must stay amortised. */
  minMessages?: number;
  /** Apply time per message assumed before the first transaction is measured. */
  initialMsPerMessage?: number;
}

export interface SliceLimits {
  maxMessages: number;
  maxBytes: number;
}

export class TxSizer {
  private msPerMessage: number;

  constructor(private readonly o: TxSizerOptions) {
    this.msPerMessage = o.initialMsPerMessage ?? 0.25;
  }

  /** A transaction of `messages` took `ms`: moving average, so one slow transaction on a busy machine does not halve the next. */
  observe(messages: number, ms: number): void {
    if (messages <= 0 || !(ms >= 0)) return;
    this.msPerMessage = 0.7 * this.msPerMessage + 0.3 * (ms / messages);
  }

  get measuredMsPerMessage(): number {
    return this.msPerMessage;
  }

  limits(backlog: boolean, sharing = 1): SliceLimits {
    const budget = backlog ? this.o.backlogBudgetMs : this.o.liveBudgetMs;
    const byTime = Math.floor(budget / Math.max(this.msPerMessage, 1e-6) / Math.max(1, sharing));
    const maxMessages = Math.max(1, Math.min(this.o.maxMessages, Math.max(this.o.minMessages ?? 200, byTime)));
    return { maxMessages, maxBytes: this.o.maxBytes };
  }
}

/** Cuts a fetched batch into consecutive slices within the limits (a single message larger than maxBytes is a slice of its own). */
export function sliceMessages(messages: KafkaMessage[], limits: SliceLimits): KafkaMessage[][] {
  const out: KafkaMessage[][] = [];
  let cur: KafkaMessage[] = [];
  let bytes = 0;
  for (const m of messages) {
    const size = (m.value?.length ?? 0) + (m.key?.length ?? 0);
    if (cur.length > 0 && (cur.length >= limits.maxMessages || bytes + size > limits.maxBytes)) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(m);
    bytes += size;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}
