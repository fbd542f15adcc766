import { createRequire } from 'node:module';
import type * as KafkaJs from 'kafkajs';

/**
 * kafkajs, loaded with one fix. kafkajs 2.2.4 groups a batch's messages by
 * partition with `[...current, message]` inside a reduce, which is O(n^2) in
 * the batch size: at 20k messages per send it used over half of the capture's
 * CPU (measured with --cpu-prof). The replacement below has the same result
 * in linear time. It has to be in the require cache before kafkajs is first
 * loaded, because sendMessages.js binds it at load time; import kafkajs
 * through this module everywhere in the capture.
 */
const require = createRequire(import.meta.url);

type Partitioner = (args: { topic: string; partitionMetadata: unknown[]; message: unknown }) => number;
function groupMessagesPerPartition({ topic, partitionMetadata, messages, partitioner }: {
  topic: string; partitionMetadata: unknown[]; messages: unknown[]; partitioner: Partitioner;
}): Record<number, unknown[]> {
  if (partitionMetadata.length === 0) return {};
  const result: Record<number, unknown[]> = {};
  for (const message of messages) {
    const p = partitioner({ topic, partitionMetadata, message });
    (result[p] ??= []).push(message);
  }
  return result;
}

const groupPath = require.resolve('kafkajs/src/producer/groupMessagesPerPartition.js');
const alreadyLoaded = require.resolve('kafkajs') in require.cache;
if (!alreadyLoaded) {
  require.cache[groupPath] = { id: groupPath, filename: groupPath, loaded: true, exports: groupMessagesPerPartition } as unknown as NodeJS.Module;
}
const kafkajs = require('kafkajs') as typeof KafkaJs;

/** False when kafkajs was loaded before this module: the publisher then keeps batches small. */
export const linearGrouping = require.cache[groupPath]?.exports === groupMessagesPerPartition;
export const { Kafka, logLevel, CompressionTypes, Partitioners } = kafkajs;
export type { Admin, Message, Producer } from 'kafkajs';
