import type { Logger } from '../logger.ts';

/**
 * Something with a lifecycle: a replication stream, a consumer, an HTTP
 * server. `start` resolves once the service is ready to do its work (not when
 * the work ends). `stop` drains what is in flight and releases resources; it
 * must be safe to call twice and before `start` finished.
 */
export interface Service {
  readonly name: string;
  start(signal: AbortSignal): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts services in order and stops them in reverse order, so that a
 * consumer stops before the sink it writes to and a producer flushes before
 * the connection it uses is closed.
 */
export class ServiceGroup {
  private readonly started: Service[] = [];
  private stopping: Promise<void> | undefined;
  private readonly controller = new AbortController();

  constructor(private readonly log: Logger) {}

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  async start(services: Service[]): Promise<void> {
    for (const svc of services) {
      if (this.controller.signal.aborted) return;
      this.log.info({ service: svc.name }, 'starting');
      try {
        await svc.start(this.controller.signal);
      } catch (err) {
        // A half-started service holds connections too; stop() is safe before start finished.
        await svc.stop().catch((e) => this.log.warn({ err: e, service: svc.name }, 'error while stopping a service that failed to start'));
        throw err;
      }
      this.started.push(svc);
    }
  }

  stop(): Promise<void> {
    this.stopping ??= this.stopAll();
    return this.stopping;
  }

  private async stopAll(): Promise<void> {
    this.controller.abort();
    for (const svc of [...this.started].reverse()) {
      try {
        this.log.info({ service: svc.name }, 'stopping');
        await svc.stop();
      } catch (err) {
        this.log.error({ err, service: svc.name }, 'error while stopping');
      }
    }
  }
}
