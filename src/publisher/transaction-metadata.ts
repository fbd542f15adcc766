import { AvroWriter } from './avro-writer.ts';
import { avroName } from './relation-schema.ts';

/**
 * Debezium's transaction metadata topic (`provide.transaction.metadata`):
 * `<prefix>.transaction`, keyed by transaction id, with a BEGIN record before
 * a transaction's first event and an END record with its event counts after
 * its last. A consumer that wants to apply a source transaction atomically
 * buffers events by `transaction.id` until the END says how many to expect.
 */
export function transactionTopic(prefix: string): string {
  return `${prefix}.transaction`;
}

export function transactionSchemas(prefix: string) {
  const ns = avroName(prefix);
  return {
    key: {
      type: 'record', name: 'TransactionMetadataKey', namespace: 'io.debezium.connector.common',
      fields: [{ name: 'id', type: 'string' }], 'connect.name': 'io.debezium.connector.common.TransactionMetadataKey',
    },
    value: {
      type: 'record', name: 'TransactionMetadataValue', namespace: 'io.debezium.connector.common',
      fields: [
        { name: 'status', type: 'string' },
        { name: 'id', type: 'string' },
        { name: 'event_count', type: ['null', 'long'], default: null },
        {
          name: 'data_collections',
          type: ['null', { type: 'array', items: { type: 'record', name: 'ConnectDefault', namespace: 'io.confluent.connect.avro', fields: [{ name: 'data_collection', type: 'string' }, { name: 'event_count', type: 'long' }] } }],
          default: null,
        },
        { name: 'ts_ms', type: 'long' },
      ],
      'connect.name': `${ns}.TransactionMetadataValue`,
    },
  };
}

function header(id: number): Buffer {
  const b = Buffer.alloc(5);
  b.writeInt32BE(id, 1);
  return b;
}

export class TransactionMetadataEncoder {
  private readonly w = new AvroWriter(4096);
  private readonly keyHeader: Buffer;
  private readonly valueHeader: Buffer;

  constructor(keyId: number, valueId: number) {
    this.keyHeader = header(keyId);
    this.valueHeader = header(valueId);
  }

  key(id: string): Buffer {
    this.w.reset();
    this.w.raw(this.keyHeader);
    this.w.string(id);
    return this.w.copyFrom(0);
  }

  /** `counts` null for BEGIN; for END the events per `schema.table`. */
  value(status: 'BEGIN' | 'END', id: string, tsMs: number, counts: Map<string, number> | null): Buffer {
    const w = this.w.reset();
    w.raw(this.valueHeader);
    w.string(status);
    w.string(id);
    if (!counts) {
      w.long(0);
      w.long(0);
    } else {
      let total = 0;
      for (const n of counts.values()) total += n;
      w.long(1); w.long(total);
      w.long(1);
      if (counts.size > 0) {
        w.long(counts.size);
        for (const [dc, n] of counts) { w.string(dc); w.long(n); }
      }
      w.long(0);
    }
    w.long(tsMs);
    return w.copyFrom(0);
  }
}
