import { describe, expect, it } from 'vitest';
import { createRegistry, decodeConfluent } from '../../src/consumer/avro.ts';
import { DecodeError, UnavailableError } from '../../src/errors.ts';

describe('decodeConfluent error classes', () => {
  it('treats an unreachable registry as retriable, never as a bad message', async () => {
    // Nothing listens on port 1; the client reports it as "status 400".
    const registry = createRegistry('http://127.0.0.1:1');
    const err = await decodeConfluent(registry, Buffer.from([0, 0, 0, 0, 7, 2])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as UnavailableError).retriable).toBe(true);
  });

  it('rejects bytes that are not in the Confluent wire format without asking the registry', async () => {
    const registry = createRegistry('http://127.0.0.1:1');
    await expect(decodeConfluent(registry, Buffer.from('hello'))).rejects.toBeInstanceOf(DecodeError);
    await expect(decodeConfluent(registry, Buffer.from([0, 1]))).rejects.toThrow(/too short/);
  });
});
