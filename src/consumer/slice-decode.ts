import type { KafkaMessage } from 'kafkajs';
import { CdcError, errorMessage } from '../errors.ts';
import type { DeadLetterNote } from '../sinks/postgres/consumer-progress.ts';
import type { DeadLetterWriter } from './dead-letters.ts';

export interface DecodedSlice<T> {
  /** One entry per message, in order; value null for messages that only advance the offset (dead-lettered, or what `decode` skips). */
  decoded: Array<{ offset: string; value: T | null }>;
  /** The messages sent to the dead-letter topic. */
  bad: Array<{ message: KafkaMessage; error: string }>;
  /** Their notes for the batch transaction (`dead_letters`). */
  deadLetters: DeadLetterNote[];
}

/**
 * Decodes and validates a slice message by message (`decode` throws for a
 * bad one, or returns null for one with nothing to apply). Bad messages go
 * to `<topic>.dlq`, acknowledged before the transaction that skips their
 * offsets commits. A retriable error (the registry down) is thrown instead:
 * the batch is retried, never dead-lettered.
 */
export async function decodeSlice<T>(
  slice: KafkaMessage[], decode: (m: KafkaMessage) => Promise<T | null>, dlq: DeadLetterWriter, topic: string, partition: number,
): Promise<DecodedSlice<T>> {
  const decoded: DecodedSlice<T>['decoded'] = [];
  const bad: DecodedSlice<T>['bad'] = [];
  for (const m of slice) {
    try {
      decoded.push({ offset: m.offset, value: await decode(m) });
    } catch (err) {
      if (err instanceof CdcError && err.retriable) throw err;
      bad.push({ message: m, error: `${err instanceof CdcError ? err.code : 'DECODE_FAILED'}: ${errorMessage(err)}` });
      decoded.push({ offset: m.offset, value: null });
    }
  }
  return { decoded, bad, deadLetters: await dlq.write(topic, partition, bad) };
}
