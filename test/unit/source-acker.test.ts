import { describe, expect, it } from 'vitest';
import { Acker } from '../../src/source/acker.ts';

describe('Acker', () => {
  it('confirms a transaction only once every event is acknowledged and it committed', () => {
    const a = new Acker(10n);
    a.begin();
    const t1 = a.track();
    a.track();
    a.done(t1);
    expect(a.confirmed).toBe(10n);
    a.commit(100n);
    expect(a.confirmed).toBe(10n); // one event still in flight
    a.done(t1);
    expect(a.confirmed).toBe(100n);
  });

  it('never passes an earlier unacknowledged transaction', () => {
    const a = new Acker(0n);
    a.begin(); const t1 = a.track(); a.commit(100n);
    a.begin(); const t2 = a.track(); a.commit(200n);
    a.begin(); const t3 = a.track(); a.commit(300n);
    a.done(t3);
    a.done(t2);
    expect(a.confirmed).toBe(0n);
    a.done(t1);
    expect(a.confirmed).toBe(300n);
  });

  it('confirms empty transactions (all rows filtered) at commit', () => {
    const a = new Acker(0n);
    const seen: bigint[] = [];
    a.onAdvance((l) => seen.push(l));
    a.begin(); a.commit(50n);
    expect(a.confirmed).toBe(50n);
    expect(seen).toEqual([50n]);
  });

  it('keepalive / heartbeat positions move the slot only when nothing is pending', () => {
    const a = new Acker(0n);
    a.begin(); const t = a.track();
    a.idle(500n); // inside a transaction: must not move
    expect(a.confirmed).toBe(0n);
    a.commit(100n);
    a.idle(500n); // committed but unacknowledged: must not move
    expect(a.confirmed).toBe(0n);
    a.done(t);
    expect(a.confirmed).toBe(100n);
    a.idle(500n);
    expect(a.confirmed).toBe(500n);
    a.idle(400n); // never backwards
    expect(a.confirmed).toBe(500n);
  });

  it('stays correct over many transactions acknowledged in random order', () => {
    const a = new Acker(0n);
    const tickets: { t: ReturnType<Acker['track']>; end: bigint }[] = [];
    for (let i = 1; i <= 5000; i++) {
      a.begin();
      const t = a.track();
      a.commit(BigInt(i * 10));
      tickets.push({ t, end: BigInt(i * 10) });
    }
    const order = tickets.map((_, i) => i).sort(() => Math.random() - 0.5);
    const acked = new Set<number>();
    for (const i of order) {
      a.done(tickets[i]!.t);
      acked.add(i);
      let prefix = 0;
      while (acked.has(prefix)) prefix++;
      expect(a.confirmed).toBe(prefix === 0 ? 0n : tickets[prefix - 1]!.end);
    }
    expect(a.pendingTransactions).toBe(0);
  });

  it('rejects protocol misuse', () => {
    const a = new Acker(0n);
    expect(() => a.track()).toThrow(/outside a transaction/);
    a.begin();
    expect(() => a.begin()).toThrow(/inside an open/);
    const t = a.track();
    a.done(t);
    expect(() => a.done(t)).toThrow(/more acknowledgements/);
  });
});
