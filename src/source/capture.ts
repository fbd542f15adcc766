import pg from 'pg';
import { isRetriable, SourceNotReadyError } from '../errors.ts';
import { kafkaEndpoint } from '../lifecycle/endpoints.ts';
import type { Service } from '../lifecycle/service.ts';
import type { Logger } from '../logger.ts';
import { EventEncoder, type EncodedRecord } from '../publisher/event-encoder.ts';
import { KafkaPublisher, type OutMessage } from '../publisher/kafka-publisher.ts';
import { kafkaClientConfig } from '../config/kafka.ts';
import { Kafka, logLevel } from '../publisher/kafkajs.ts';
import { RegistryClient } from '../publisher/registry-client.ts';
import { SchemaManager } from '../publisher/schema-manager.ts';
import { TransactionMetadataEncoder, transactionSchemas, transactionTopic } from '../publisher/transaction-metadata.ts';
import { backoffMs, sleep } from '../util/sleep.ts';
import { CaptureHealth } from '../health/capture-health.ts';
import { Acker, type TxTicket } from './acker.ts';
import type { CaptureConfig, SkippableOp } from './capture-config.ts';
import { OP_CODE, type ChangeEvent, type ReadEvent, type Relation } from './change-event.ts';
import { IncrementalSnapshotter, WINDOW_PREFIX } from './incremental-snapshot.ts';
import { formatLsn, type Lsn } from './lsn.ts';
import { CaptureMetrics } from './metrics.ts';
import { PgoutputDecoder } from './pgoutput.ts';
import type { ReplicationConnection } from './replication-connection.ts';
import { currentRole, describeMissing, missingCapturePrivileges } from './privileges.ts';
import { checkSource, ensurePublication, openSlot, tablesInSchemas } from './slot.ts';
import { runSnapshot } from './snapshot.ts';

export const CAPTURE_VERSION = '0.1.0';
const HEARTBEAT_PREFIX = 'shopstream.heartbeat';
/** Transactional logical message asking for a re-snapshot of one table; content = 'schema.table'. */
export const RESNAPSHOT_PREFIX = 'shopstream.snapshot';

/**
 * The capture process: slot -> pgoutput decoder -> Avro encoder -> Kafka,
 * with the acker deciding what the slot may confirm. Crash-only: any fatal
 * error (lost replication connection, failed Kafka send) stops the capture
 * without confirming anything further and reports through `onFatal`; the
 * restart resumes from the slot, re-sending at most what was unconfirmed.
 */
export class CaptureService implements Service {
  readonly name = 'capture';
  readonly metrics = new CaptureMetrics();
  /** /healthz /readyz /metrics and the watchdog; `health.state.setCondition` adds a condition. */
  readonly health: CaptureHealth;
  metricsPort: number | null = null;

  private pool!: pg.Pool;
  private repl!: ReplicationConnection;
  private publisher!: KafkaPublisher;
  private schemas!: SchemaManager;
  private encoder: EventEncoder;
  private acker: Acker | null = null;
  private decoder: PgoutputDecoder;
  private tables: string[] = [];

  /** Chunks received while an async step (schema registration, topic creation) is pending. */
  private backlog: [Buffer, number, Lsn][] = [];
  private blocked: Promise<void> | null = null;
  private lastReceived: Lsn = 0n;
  private lastSentConfirmed: Lsn = -1n;
  private commitMs = 0;
  private timers: NodeJS.Timeout[] = [];
  private stopping: Promise<void> | null = null;
  private streamDone: Promise<void> | null = null;
  private fatalErr: Error | null = null;

  constructor(
    private readonly cfg: CaptureConfig,
    private readonly log: Logger,
    private readonly onFatal: (err: Error) => void = () => {},
  ) {
    this.health = new CaptureHealth(cfg, this.metrics, log);
    this.encoder = new EventEncoder({ version: CAPTURE_VERSION, name: cfg.topicPrefix, db: new URL(cfg.sourceUrl).pathname.slice(1) || 'postgres' }, cfg.tombstones);
    this.decoder = new PgoutputDecoder({
      begin: (b) => {
        this.acker!.begin();
        this.incremental?.onBegin(b.txId, b.finalLsn);
        this.metrics.observeReceive(Date.now() - Number(b.commitTimeUs / 1000n));
        if (this.txMeta) this.txState = { id: `${b.txId}:${b.finalLsn}`, commitMs: Number(b.commitTimeUs / 1000n), counts: null };
      },
      commit: (c) => {
        if (this.txMeta && this.txState?.counts) this.emitTxMeta('END', this.txState.counts);
        this.txState = null;
        this.acker!.commit(c.endLsn);
        this.incremental?.onCommit(c.endLsn);
      },
      relation: (r, changed) => { if (changed || !this.schemas.get(r)) this.block(this.withRetry('schema registration', () => this.schemas.prepare(r)).then(() => {})); },
      change: (ev) => {
        // The re-snapshot window sees every change, published or not: a skipped one still changed the source.
        this.incremental?.observe(ev);
        // Skipped ops (CAPTURE_SKIPPED_OPERATIONS) are neither published nor counted; the slot still moves past them.
        if (ev.kind !== 'read' && cfg.skippedOperations.has(OP_CODE[ev.kind] as SkippableOp)) return;
        this.onChange(ev);
      },
      message: (m) => {
        // A heartbeat outside any transaction proves everything before it was sent to us.
        if (m.prefix === HEARTBEAT_PREFIX && !m.transactional && !this.decoder.inTransaction) this.acker!.idle(m.lsn);
        if (!m.transactional || !this.decoder.inTransaction || !this.incremental) return;
        if (m.prefix === RESNAPSHOT_PREFIX) this.block(this.incremental.request(m.content.toString('utf8'), m.lsn));
        else if (m.prefix === WINDOW_PREFIX) this.emitChunk(this.incremental.onWatermark(m.content), m.lsn);
      },
    });
  }

  /** A decoded change: counted for the transaction metadata and published with its transaction. */
  private onChange(ev: ChangeEvent): void {
    if (this.txState) {
      if (!this.txState.counts) { this.txState.counts = new Map(); this.emitTxMeta('BEGIN', null); }
      const dc = `${ev.relation.schema}.${ev.relation.table}`;
      this.txState.counts.set(dc, (this.txState.counts.get(dc) ?? 0) + 1);
    }
    this.publish(ev, this.trackTx);
  }

  /** The acker's track() for the open transaction; one function for every event, not a bound copy each. */
  private readonly trackTx = (): TxTicket => this.acker!.track();

  /**
   * A high watermark's chunk rows, emitted inside its transaction at its
   * position: the acker confirms the watermark only once every row is in
   * Kafka, and each row's ordering key is the watermark's (docs/capture.md).
   */
  private emitChunk(chunk: { relation: Relation; rows: ReadEvent['after'][] } | null, lsn: Lsn): void {
    if (!chunk) return;
    // Not counted in the transaction metadata: snapshot reads carry no transaction block.
    const track = this.trackTx;
    for (const after of chunk.rows) {
      const ev: ReadEvent = { kind: 'read', after, snapshot: 'incremental', ...this.decoder.positionIn(chunk.relation, lsn) };
      this.publish(ev, track);
    }
  }

  private incremental: IncrementalSnapshotter | null = null;


  private txMeta: { topic: string; encoder: TransactionMetadataEncoder } | null = null;
  private txState: { id: string; commitMs: number; counts: Map<string, number> | null } | null = null;

  /** A BEGIN/END record on the transaction topic; part of its transaction for the acker. */
  private emitTxMeta(status: 'BEGIN' | 'END', counts: Map<string, number> | null): void {
    const { topic, encoder } = this.txMeta!;
    const st = this.txState!;
    const out: OutMessage = {
      topic, key: encoder.key(st.id), value: encoder.value(status, st.id, st.commitMs, counts),
      ticket: this.acker!.track(), commitMs: st.commitMs, table: 'transaction', op: status,
    };
    if (this.deferred.length > 0) this.deferred.push(out);
    else this.publisher.add(out);
  }

  /** The LSN the slot has been told is durable. */
  get confirmedLsn(): Lsn {
    return this.acker?.confirmed ?? 0n;
  }

  async start(signal: AbortSignal): Promise<void> {
    try {
      await this.startInner(signal);
    } catch (err) {
      // A failed start is not stopped by ServiceGroup: release connections here.
      await this.stop().catch(() => {});
      throw err;
    }
  }

  private async startInner(signal: AbortSignal): Promise<void> {
    const cfg = this.cfg;
    this.metricsPort = await this.health.listen();
    this.pool = new pg.Pool({ connectionString: cfg.sourceUrl, max: 3, application_name: 'shopstream-capture-meta' });
    this.pool.on('error', (err) => this.log.warn({ err }, 'idle source connection error'));
    // A checked-out client losing its connection between queries must not be an unhandled 'error' (Postgres restarting).
    this.pool.on('connect', (client) => client.on('error', (err) => this.log.warn({ err }, 'source connection error')));
    await checkSource(this.pool);
    this.tables = cfg.tables ?? (await tablesInSchemas(this.pool, cfg.schemas));
    const missing = await missingCapturePrivileges(this.pool, { tables: this.tables, publication: cfg.publication, metaSchema: cfg.metaSchema });
    if (missing.length > 0) throw new SourceNotReadyError(describeMissing(await currentRole(this.pool), missing));
    await ensurePublication(this.pool, cfg.publication, this.tables, this.log);

    const kafka = new Kafka(kafkaClientConfig(cfg.kafka, { clientId: 'shopstream-capture', logLevel: logLevel.WARN }));
    this.publisher = new KafkaPublisher(kafka, cfg.publisher, {
      acked: (batch) => this.onAcked(batch),
      drained: () => { if (!this.blocked) this.repl?.resume(); },
      fatal: (err) => this.fail(err),
    }, this.log, kafkaEndpoint(cfg.kafkaBrokers), cfg.kafkaBrokers);
    await this.publisher.connect();
    this.metrics.bufferedBytes = () => this.publisher.bufferedBytes;
    this.schemas = new SchemaManager(this.pool, new RegistryClient(cfg.registry), cfg.topicPrefix, (t) => this.publisher.ensureTopic(t, 'table'), this.log, cfg.publisher.cleanupPolicy.includes('compact'));
    if (cfg.transactionMetadata) {
      const topic = transactionTopic(cfg.topicPrefix);
      const registry = new RegistryClient(cfg.registry);
      const sch = transactionSchemas(cfg.topicPrefix);
      await this.publisher.ensureTopic(topic);
      this.txMeta = { topic, encoder: new TransactionMetadataEncoder(await registry.register(`${topic}-key`, sch.key), await registry.register(`${topic}-value`, sch.value)) };
    }

    const startLsn = await this.prepareSlot(signal);
    this.acker = new Acker(startLsn);
    this.acker.onAdvance((lsn) => this.metrics.confirmedLsn.set(Number(lsn)));
    this.decoder.startAt(startLsn);
    this.incremental = new IncrementalSnapshotter({
      sourceUrl: cfg.sourceUrl, metaSchema: cfg.metaSchema, slot: cfg.slot, chunkSize: cfg.snapshotChunkSize,
      tables: this.tables, progressLogMs: cfg.progressLogMs,
    }, {
      prepare: async (r) => { await this.withRetry('schema registration', () => this.schemas.prepare(r)); },
      confirmed: (lsn, sig) => this.acker!.whenConfirmed(lsn, sig),
      backpressure: async () => { while (this.publisher.overHighWater && !this.stopping) await sleep(5); },
      progress: (table, done, est) => { this.metrics.snapshotRows.set({ table }, done); this.metrics.snapshotEstimate.set({ table }, est); },
      fail: (err) => this.fail(err),
    }, this.log);
    await this.incremental.start();
    this.log.info({ slot: cfg.slot, publication: cfg.publication, startLsn: formatLsn(startLsn), tables: this.tables.length }, 'streaming');
    this.streamDone = this.repl.stream(cfg.slot, cfg.publication, startLsn, {
      data: (chunk, offset, lsn) => this.onData(chunk, offset, lsn),
      keepalive: (walEnd, reply) => this.onKeepalive(walEnd, reply),
    }).then(
      () => { if (!this.stopping) this.fail(new SourceNotReadyError('replication stream ended unexpectedly')); },
      (err: Error) => { if (!this.stopping) this.fail(err); },
    );
    this.health.streaming(this.pool, (err) => this.fail(err));
    this.timers.push(setInterval(() => this.reportStatus(false), cfg.statusIntervalMs));
    if (cfg.heartbeatMs > 0) this.timers.push(setInterval(() => void this.heartbeat(), cfg.heartbeatMs));
    this.timers.push(setInterval(() => void this.observe(), this.cfg.progressLogMs));
  }

  /** Finds or creates the slot (taking the initial snapshot when asked) and returns where streaming starts. */
  private async prepareSlot(signal: AbortSignal): Promise<Lsn> {
    const { repl, startLsn } = await openSlot({
      pool: this.pool, cfg: this.cfg, signal, log: this.log,
      snapshot: async (snapshotName, lsn) => {
        if (!snapshotName) throw new SourceNotReadyError('the new slot exported no snapshot to read the tables in');
        const rows = await runSnapshot({ url: this.cfg.sourceUrl, tables: this.tables, snapshotName, lsn }, {
          prepare: async (r) => { await this.schemas.prepare(r); },
          emit: (ev) => this.publish(ev, null),
          backpressure: async () => { while (this.publisher.overHighWater) await sleep(5); },
          progress: (table, done, est) => { this.metrics.snapshotRows.set({ table }, done); this.metrics.snapshotEstimate.set({ table }, est); },
        }, this.log);
        await this.publisher.flush();
        this.log.info({ rows }, 'initial snapshot complete');
      },
    });
    this.repl = repl;
    return startLsn;
  }

  /** Retries a step that failed for a retriable reason (registry or Kafka briefly away), with backoff. */
  private async withRetry<T>(what: string, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!isRetriable(err) || this.stopping || attempt >= 20) throw err;
        const ms = backoffMs(attempt, 200, 10_000);
        this.log.warn({ err, attempt, retryInMs: ms }, `${what} failed; retrying`);
        await sleep(ms);
      }
    }
  }

  private publish(ev: ChangeEvent, track: (() => TxTicket) | null): void {
    const prepared = this.schemas.get(ev.relation);
    if (!prepared) throw new SourceNotReadyError(`no schema prepared for ${ev.relation.schema}.${ev.relation.table}`);
    const { records, error } = this.encoder.encode(ev, prepared);
    if (error) {
      this.log.error({ err: error, table: `${ev.relation.schema}.${ev.relation.table}`, lsn: formatLsn(ev.lsn) }, 'event sent to dead-letter topic');
      this.metrics.dlq.inc({ table: ev.relation.table });
      const topic = records[0]!.topic;
      // The DLQ topic may not exist yet: create it before this record and everything after it.
      this.block(this.publisher.ensureTopic(topic));
      this.deferred.push(...records.map((r) => this.toOut(r, ev, track)));
      return;
    }
    if (this.deferred.length > 0) { this.deferred.push(...records.map((r) => this.toOut(r, ev, track))); return; }
    for (const r of records) this.publisher.add(this.toOut(r, ev, track));
    if (this.publisher.overHighWater) this.repl?.pause();
  }

  /** Records held back behind a pending DLQ topic creation, to keep their order. */
  private deferred: OutMessage[] = [];

  private toOut(r: EncodedRecord, ev: ChangeEvent, track: (() => TxTicket) | null): OutMessage {
    // A plain literal (no spread): this runs for every record.
    return {
      topic: r.topic, key: r.key, value: r.value, headers: r.headers, ticket: track ? track() : null,
      commitMs: Number(ev.commitTimeUs) / 1000, table: ev.relation.table, op: ev.kind,
    };
  }

  private onAcked(batch: OutMessage[]): void {
    const now = Date.now();
    let prev: TxTicket | null = null;
    let n = 0;
    for (const m of batch) {
      const t = m.ticket;
      if (t !== prev) {
        if (prev) this.acker!.done(prev, n);
        if (t && m.commitMs) this.metrics.observeLatency(now - m.commitMs);
        prev = t;
        n = 0;
      }
      n += 1;
    }
    this.countEvents(batch);
    if (prev) this.acker!.done(prev, n);
    this.metrics.acked(batch.length);
    this.reportStatus(false);
  }

  /**
   * Per-(table, op) counts, incremented once per batch rather than per
   * message; consecutive records of one table and op (most of a batch) are
   * counted as one run, so no key string is built per message.
   */
  private countEvents(batch: OutMessage[]): void {
    const counts = new Map<string, Map<string, number>>();
    let table = '';
    let op = '';
    let n = 0;
    const flush = () => {
      if (n === 0) return;
      let byOp = counts.get(table);
      if (!byOp) counts.set(table, (byOp = new Map()));
      byOp.set(op, (byOp.get(op) ?? 0) + n);
    };
    for (const m of batch) {
      if (!m.value) continue;
      if (m.table === table && m.op === op) { n++; continue; }
      flush();
      table = m.table;
      op = m.op;
      n = 1;
    }
    flush();
    for (const [t, byOp] of counts) for (const [o, k] of byOp) this.metrics.events.inc({ table: t, op: o }, k);
  }

  /** Runs `p` while holding back incoming chunks, then replays them in order. */
  private block(p: Promise<void>): void {
    const prior = this.blocked ?? Promise.resolve();
    const gate: Promise<void> = prior.then(() => p).then(
      () => {
        if (this.blocked !== gate) return;
        this.blocked = null;
        const deferred = this.deferred;
        this.deferred = [];
        for (const m of deferred) this.publisher.add(m);
        const backlog = this.backlog;
        this.backlog = [];
        for (let i = 0; i < backlog.length; i++) {
          if (this.blocked) { this.backlog = backlog.slice(i).concat(this.backlog); return; }
          const [c, o, l] = backlog[i]!;
          this.decode(c, o, l);
        }
        if (!this.blocked && !this.publisher.overHighWater) this.repl.resume();
      },
      (err: Error) => this.fail(err),
    );
    this.blocked = gate;
  }

  private onData(chunk: Buffer, offset: number, lsn: Lsn): void {
    if (this.blocked) {
      this.backlog.push([chunk, offset, lsn]);
      this.repl.pause();
      return;
    }
    this.decode(chunk, offset, lsn);
  }

  private decode(chunk: Buffer, offset: number, lsn: Lsn): void {
    if (this.fatalErr) return;
    if (lsn > this.lastReceived) this.lastReceived = lsn;
    try {
      this.decoder.decode(chunk, offset, lsn);
    } catch (err) {
      this.fail(err as Error);
    }
  }

  private onKeepalive(walEnd: Lsn, replyRequested: boolean): void {
    if (walEnd > this.lastReceived && !this.blocked && this.backlog.length === 0 && !this.decoder.inTransaction) {
      this.lastReceived = walEnd;
      this.acker?.idle(walEnd);
    }
    if (replyRequested) this.reportStatus(true);
  }

  /** Standby status update with the acker's LSN — never the received one. */
  private reportStatus(force: boolean): void {
    if (!this.acker || this.fatalErr || !this.repl) return;
    const c = this.acker.confirmed;
    const since = this.repl.msSinceStatus;
    // Throttled to one update per 100 ms while moving; the interval timer sends the last one.
    if (!(force || (c !== this.lastSentConfirmed && since >= 100) || since >= 10_000)) return;
    this.repl.sendStatus(this.lastReceived > c ? this.lastReceived : c, c);
    this.lastSentConfirmed = c;
  }

  private async heartbeat(): Promise<void> {
    try {
      await this.pool.query('SELECT pg_logical_emit_message(false, $1, $2)', [HEARTBEAT_PREFIX, String(Date.now())]);
    } catch (err) {
      this.log.warn({ err }, 'heartbeat failed');
    }
  }

  private async observe(): Promise<void> {
    const acked = this.metrics.ackedSinceLast;
    this.metrics.ackedSinceLast = 0;
    try {
      const { rows } = await this.pool.query<{ lag: string | null }>(
        'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint::text AS lag FROM pg_replication_slots WHERE slot_name = $1', [this.cfg.slot]);
      const lag = Number(rows[0]?.lag ?? 0);
      this.metrics.slotLag.set(lag);
      const st = this.publisher.stats;
      this.log.info({ eventsPerSec: Math.round(acked / (this.cfg.progressLogMs / 1000)), slotLagBytes: lag, sends: st.sends, avgBatch: Math.round(st.messages / Math.max(1, st.sends)), avgSendMs: Math.round(st.sendMs / Math.max(1, st.sends)), sendingMs: Math.round(st.sendMs), pausedMs: Math.round(this.repl.pausedMs), confirmed: formatLsn(this.acker?.confirmed ?? 0n), bufferedBytes: this.publisher.bufferedBytes }, 'capture progress');
    } catch (err) {
      this.log.warn({ err }, 'slot lag query failed');
    }
  }

  private fail(err: Error): void {
    if (this.fatalErr || this.stopping) return;
    this.fatalErr = err;
    this.health.failed(err);
    this.log.error({ err }, 'capture failed; stopping without confirming further');
    this.onFatal(err);
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const t of this.timers) clearInterval(t);
      this.health.stopWatching();
      await this.incremental?.stop();
      this.repl?.pause();
      if (this.publisher && !this.fatalErr) {
        await Promise.race([this.publisher.flush().catch(() => {}), sleep(10_000)]);
        this.reportStatus(true);
      }
      await this.repl?.close();
      await this.streamDone?.catch(() => {});
      await this.publisher?.close();
      await this.health.close();
      await this.pool?.end().catch(() => {});
    })();
    return this.stopping;
  }
}
