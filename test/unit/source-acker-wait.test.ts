import { describe, expect, it } from 'vitest';
import { Acker } from '../../src/source/acker.ts';

describe('Acker.whenConfirmed', () => {
  it('resolves once every transaction up to the LSN is acknowledged, not before', async () => {
    const a = new Acker(100n);
    const ac = new AbortController();
    let done = false;
    a.begin();
    const t = a.track();
    a.commit(200n);
    const wait = a.whenConfirmed(200n, ac.signal).then(() => { done = true; });
    await Promise.resolve();
    expect(done).toBe(false);
    a.done(t);
    await wait;
    expect(done).toBe(true);
    await a.whenConfirmed(150n, ac.signal); // already past: resolves at once
  });

  it('lets an abort end the wait', async () => {
    const a = new Acker(0n);
    const ac = new AbortController();
    const wait = a.whenConfirmed(10n, ac.signal);
    ac.abort();
    await wait;
    expect(a.confirmed).toBe(0n);
  });
});
