import pg from 'pg';
import { SourceNotReadyError, UnavailableError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { formatLsn, type Lsn } from './lsn.ts';
import { PG_EPOCH_MICROS } from './pg-values.ts';

/**
 * A walsender connection (`replication=database`) speaking the streaming
 * replication protocol directly over pg's Connection. We write our own
 * standby status updates instead of pg-logical-replication's: its keepalive
 * timer reports the last *received* LSN even with manual acknowledgement
 * (kibae/pg-logical-replication#174), and it reports LSN+1, which can skip
 * a transaction whose commit record starts exactly at the acknowledged end.
 */
export interface StreamHandlers {
  /** XLogData: `chunk[offset..]` is one pgoutput message that starts at WAL position `lsn`. */
  data(chunk: Buffer, offset: number, lsn: Lsn): void;
  /** Primary keepalive: the server has sent everything up to `walEnd`. */
  keepalive(walEnd: Lsn, replyRequested: boolean): void;
}

interface PgConnection {
  stream: { pause(): void; resume(): void; isPaused?(): boolean };
  sendCopyFromChunk(b: Buffer): void;
  on(ev: 'copyData', fn: (m: { chunk: Buffer }) => void): void;
}

export class ReplicationConnection {
  private client: pg.Client | null = null;
  private paused = false;
  private pausedAt = 0;
  /** Total time the socket was paused for backpressure (for the progress log). */
  pausedMs = 0;
  private lastStatusAt = 0;

  constructor(private readonly url: string, private readonly log: Logger) {}

  async connect(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.url,
      replication: 'database',
      // Value text must be parseable the same way whatever the server's defaults are.
      options: '-c datestyle=ISO -c timezone=UTC -c intervalstyle=iso_8601 -c bytea_output=hex -c extra_float_digits=3',
      application_name: 'shopstream-capture',
    } as pg.ClientConfig);
    client.on('error', (err) => this.log.error({ err }, 'replication connection error'));
    try {
      await client.connect();
    } catch (err) {
      const msg = (err as Error).message;
      if (/replication|permission|pg_hba/i.test(msg)) throw new SourceNotReadyError(`cannot open a replication connection: ${msg}`, { cause: err });
      throw new UnavailableError('STACK_UNAVAILABLE', `cannot connect to the source database: ${msg}`, { cause: err });
    }
    this.client = client;
  }

  private get conn(): PgConnection {
    if (!this.client) throw new Error('replication connection is not open');
    return (this.client as unknown as { connection: PgConnection }).connection;
  }

  /** Runs a replication command (CREATE_REPLICATION_SLOT, IDENTIFY_SYSTEM, ...). */
  async command<T extends pg.QueryResultRow>(sql: string): Promise<T[]> {
    if (!this.client) throw new Error('replication connection is not open');
    return (await this.client.query<T>(sql)).rows;
  }

  /**
   * Starts streaming; resolves when the server ends the stream or the
   * connection closes, rejects on a server error.
   */
  stream(slot: string, publication: string, startLsn: Lsn, handlers: StreamHandlers): Promise<void> {
    const client = this.client;
    if (!client) throw new Error('replication connection is not open');
    this.conn.on('copyData', ({ chunk }) => {
      const tag = chunk[0];
      if (tag === 0x77) handlers.data(chunk, 25, chunk.readBigUInt64BE(1));
      else if (tag === 0x6b) handlers.keepalive(chunk.readBigUInt64BE(1), chunk[17] === 1);
    });
    const sql = `START_REPLICATION SLOT "${slot}" LOGICAL ${formatLsn(startLsn)} (proto_version '1', publication_names '"${publication}"', messages 'true')`;
    return client.query(sql).then(() => undefined);
  }

  /** Standby status update: `flushed` becomes the slot's confirmed_flush_lsn. */
  sendStatus(received: Lsn, flushed: Lsn, replyRequested = false): void {
    if (!this.client) return;
    const b = Buffer.allocUnsafe(34);
    b[0] = 0x72; // 'r'
    b.writeBigUInt64BE(received, 1);
    b.writeBigUInt64BE(flushed, 9);
    b.writeBigUInt64BE(flushed, 17);
    b.writeBigInt64BE(BigInt(Date.now()) * 1000n - PG_EPOCH_MICROS, 25);
    b[33] = replyRequested ? 1 : 0;
    this.conn.sendCopyFromChunk(b);
    this.lastStatusAt = Date.now();
  }

  get msSinceStatus(): number {
    return Date.now() - this.lastStatusAt;
  }

  /** Stops reading from the socket: TCP backpressure makes the walsender wait. */
  pause(): void {
    if (this.paused || !this.client) return;
    this.paused = true;
    this.pausedAt = performance.now();
    this.conn.stream.pause();
  }

  resume(): void {
    if (!this.paused || !this.client) return;
    this.paused = false;
    this.pausedMs += performance.now() - this.pausedAt;
    this.conn.stream.resume();
  }

  get isPaused(): boolean {
    return this.paused;
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = null;
    if (!c) return;
    try {
      if (this.paused) (c as unknown as { connection: PgConnection }).connection.stream.resume();
      await Promise.race([c.end(), new Promise((r) => setTimeout(r, 2000))]);
    } catch {
      // closing a broken connection; nothing left to release
    }
  }
}
