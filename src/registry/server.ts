import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { redactUrl } from '../config/env.ts';
import { errorMessage, UnavailableError } from '../errors.ts';
import type { Service } from '../lifecycle/service.ts';
import type { Logger } from '../logger.ts';
import { backoffMs, sleep } from '../util/sleep.ts';
import type { RegistryConfig } from './config.ts';
import { buildApp } from './routes.ts';
import { RegistryStore } from './store.ts';

/** The schema registry as a Service: a Postgres pool, the store and the HTTP listener. */
export class RegistryService implements Service {
  readonly name = 'schema-registry';
  private pool: pg.Pool | undefined;
  private app: FastifyInstance | undefined;
  private stopping: Promise<void> | undefined;
  private boundUrl: string | undefined;

  constructor(
    private readonly config: RegistryConfig,
    private readonly log: Logger,
  ) {}

  /** Base URL once listening, e.g. http://127.0.0.1:58081 (the real port when configured with 0). */
  get url(): string {
    if (!this.boundUrl) throw new Error('schema registry is not listening');
    return this.boundUrl;
  }

  async start(signal: AbortSignal): Promise<void> {
    const { config, log } = this;
    this.pool = new pg.Pool({ connectionString: config.databaseUrl, max: 10, application_name: 'schema-registry' });
    // An idle client losing its connection must not crash the process; the next query reconnects.
    this.pool.on('error', (err) => log.warn({ err }, 'idle registry store connection failed'));
    const store = new RegistryStore(this.pool, config.schema, config.defaultCompatibility);
    await this.migrateWithRetry(store, signal);
    if (signal.aborted) return;

    this.app = buildApp(store, log, undefined, { basicAuth: config.basicAuth, tls: config.tls });
    await this.app.listen({ host: config.host, port: config.port });
    const addr = this.app.server.address() as AddressInfo;
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    this.boundUrl = `${config.tls ? 'https' : 'http'}://${host}:${addr.port}`;
    log.info({ url: this.boundUrl, store: redactUrl(config.databaseUrl), schema: config.schema, auth: config.basicAuth ? `basic (${config.basicAuth.username})` : 'off' }, 'listening');
  }

  stop(): Promise<void> {
    this.stopping ??= this.close();
    return this.stopping;
  }

  private async close(): Promise<void> {
    // Stop accepting requests and let in-flight ones finish before the pool goes.
    await this.app?.close();
    await this.pool?.end();
  }

  /** The store may come up after us (stack start-up order), so retry for a while before failing start-up. */
  private async migrateWithRetry(store: RegistryStore, signal: AbortSignal): Promise<void> {
    const deadline = Date.now() + this.config.startupTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        await store.migrate();
        return;
      } catch (err) {
        if (signal.aborted || Date.now() >= deadline) {
          throw new UnavailableError(
            'SCHEMA_REGISTRY',
            `registry store ${redactUrl(this.config.databaseUrl)} unusable: ${errorMessage(err)}`,
            { cause: err },
          );
        }
        this.log.warn({ attempt, err: errorMessage(err) }, 'registry store not ready, retrying');
        await sleep(backoffMs(attempt, 200, 2_000), signal);
      }
    }
  }
}
