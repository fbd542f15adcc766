import kafkajs, { type Admin, type Consumer, type ConsumerConfig, type Kafka, type Producer } from 'kafkajs';
import { consumerRetry, watchConsumerCrash } from '../lifecycle/consumer-crash.ts';
import { watchGroupLiveness } from '../lifecycle/group-liveness.ts';
import type { Logger } from '../logger.ts';
import type { GroupMemberHooks } from './member-hooks.ts';

export interface GroupClients {
  admin: Admin;
  /** The dead-letter producer: idempotent, one request in flight, no topic auto-creation. */
  producer: Producer;
  consumer: Consumer;
}

export interface GroupClientOptions extends Pick<GroupMemberHooks, 'onConsumer' | 'onFatal' | 'endpoints'> {
  group: string;
  log: Logger;
  signal: AbortSignal;
  /** The member's name in the crash error ("warehouse-consumer stopped: ..."). */
  name: string;
  isStopping: () => boolean;
  sessionTimeoutMs?: number;
  /** No accepted heartbeat for this long after a join: stuck, reported to onFatal (default 2 x session + rebalance timeout). */
  livenessBoundMs?: number;
  /** Fetch sizes and the like, on top of the shared settings. */
  consumerConfig?: Partial<ConsumerConfig>;
}

/**
 * The three kafkajs clients every consumer group member runs: the same
 * session and heartbeat, the restart policy that retries what is retriable,
 * and the crash watch that ends the process on what is not. Not connected:
 * the caller holds them first, so a stop() during connect disconnects them.
 */
export function createGroupClients(kafka: Kafka, o: GroupClientOptions): GroupClients {
  const admin = kafka.admin();
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: kafkajs.Partitioners.DefaultPartitioner });
  const sessionTimeout = o.sessionTimeoutMs ?? 10_000;
  const rebalanceTimeout = sessionTimeout * 3;
  const consumer = kafka.consumer({
    groupId: o.group,
    allowAutoTopicCreation: false,
    maxWaitTimeInMs: 100,
    ...o.consumerConfig,
    sessionTimeout,
    // kafkajs waits for a JoinGroup answer up to this plus 5 s, and the
    // coordinator waits this long for members that do not rejoin. Its default
    // (60 s) let a group sit in one rebalance for minutes when coordinators
    // moved twice after a broker kill; a member needs far less to finish its
    // transaction in flight and rejoin.
    rebalanceTimeout,
    heartbeatInterval: Math.min(3000, Math.floor(sessionTimeout / 5)),
    // Postgres or the registry being down is a pause, not a reason to die; a fatal error ends the process.
    retry: consumerRetry({ log: o.log, signal: o.signal, onFatal: o.onFatal, endpoints: o.endpoints }),
  });
  o.onConsumer?.(consumer);
  watchConsumerCrash(consumer, { log: o.log, signal: o.signal, onFatal: o.onFatal, endpoints: o.endpoints, name: o.name, isStopping: o.isStopping });
  watchGroupLiveness(consumer, { log: o.log, signal: o.signal, onFatal: o.onFatal, name: o.name, isStopping: o.isStopping, boundMs: o.livenessBoundMs ?? 2 * sessionTimeout + rebalanceTimeout });
  return { admin, producer, consumer };
}
