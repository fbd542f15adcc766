import type { Admin, ITopicConfig } from 'kafkajs';
import pino from 'pino';
import { UnavailableError } from '../errors.ts';
import { withRetry } from '../lifecycle/retry.ts';
import type { Endpoint } from '../lifecycle/endpoints.ts';
import type { Logger } from '../logger.ts';

/**
 * A topic is usable once its metadata is served, not when CreateTopics
 * returns: on a broker that has just started, CreateTopics (even with
 * waitForLeaders) can return while the partition's leader has not loaded it
 * yet, and the first produce or fetch then fails with "This server does not
 * host this topic-partition" (UNKNOWN_TOPIC_OR_PARTITION, code 3). The
 * demo's first run died of it. So a topic counts as ready when (1) a
 * metadata request lists every partition with a leader and no error, and
 * (2) each partition's leader answers a ListOffsets request for it, which
 * it refuses in exactly that window.
 */
export interface TopicReadyOptions {
  /** For the throttled "waiting for Kafka" lines; silent without. */
  log?: Logger;
  signal?: AbortSignal;
  /** Give up after this long (throws STARTUP_TIMEOUT); undefined waits as long as it takes. */
  maxWaitMs?: number;
  via?: Endpoint;
}

const silent = pino({ level: 'silent' });

export async function waitTopicsReady(admin: Admin, topics: string[], o: TopicReadyOptions): Promise<void> {
  if (topics.length === 0) return;
  await withRetry(async () => {
    const { topics: meta } = await admin.fetchTopicMetadata({ topics });
    for (const t of topics) {
      const m = meta.find((x) => x.name === t);
      if (!m || m.partitions.length === 0) throw new UnavailableError('KAFKA_UNAVAILABLE', `topic ${t} is not in the metadata yet`);
      const bad = m.partitions.find((p) => p.partitionErrorCode !== 0 || p.leader < 0);
      if (bad) throw new UnavailableError('KAFKA_UNAVAILABLE', `topic ${t} partition ${bad.partitionId} has no leader yet (error code ${bad.partitionErrorCode})`);
    }
    for (const t of topics) await admin.fetchTopicOffsets(t);
  }, { what: `topics ready (${topics.length === 1 ? topics[0] : `${topics.length} topics`})`, log: o.log ?? silent, signal: o.signal, maxWaitMs: o.maxWaitMs, via: o.via, baseMs: 100, capMs: 2_000 });
}

/**
 * Creates the topics that do not exist yet ("already exists" from a racing
 * creator is fine) and waits until every one of `topics` is ready.
 */
export async function createTopicsReady(admin: Admin, topics: ITopicConfig[], o: TopicReadyOptions): Promise<void> {
  if (topics.length === 0) return;
  await withRetry(async () => {
    const existing = new Set(await admin.listTopics());
    const missing = topics.filter((t) => !existing.has(t.topic));
    // kafkajs resolves (false) when every topic already exists, e.g. a racing creator won.
    if (missing.length > 0) await admin.createTopics({ topics: missing, waitForLeaders: true });
  }, { what: 'topic creation', log: o.log ?? silent, signal: o.signal, maxWaitMs: o.maxWaitMs, via: o.via, baseMs: 100, capMs: 2_000 });
  await waitTopicsReady(admin, topics.map((t) => t.topic), o);
}
