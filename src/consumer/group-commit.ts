/**
 * Group commit: callers submit items concurrently; items that arrive while
 * a run is in progress (or in the same turn of the event loop as the first)
 * are applied together by the next run, one run at a time. Each caller's
 * promise settles with its own item's result when its run finishes, or
 * rejects with the run's error. Used so the batches kafkajs hands over for
 * several partitions at once become one Postgres transaction.
 */
export class GroupCommit<T, R> {
  private queue: Array<{ item: T; resolve: (r: R) => void; reject: (e: unknown) => void }> = [];
  private running = false;

  /**
   * @param apply applies items in one unit; returns one result per item, in order.
   * @param maxItems most items per run (the rest wait for the next run).
   */
  constructor(
    private readonly apply: (items: T[]) => Promise<R[]>,
    private readonly maxItems = Number.POSITIVE_INFINITY,
  ) {}

  submit(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (this.running) return;
      this.running = true;
      // setImmediate, not a microtask: lets the other batches of the same
      // fetch, whose decoding is already under way, join this run.
      setImmediate(() => void this.drain());
    });
  }

  get waiting(): number {
    return this.queue.length;
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const take = this.queue.splice(0, Math.min(this.queue.length, this.maxItems));
      try {
        const out = await this.apply(take.map((t) => t.item));
        if (out.length !== take.length) throw new Error(`group commit: ${out.length} results for ${take.length} items`);
        take.forEach((t, i) => t.resolve(out[i]!));
      } catch (err) {
        for (const t of take) t.reject(err);
      }
    }
    this.running = false;
  }
}
