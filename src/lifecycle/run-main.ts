import { loadStackConfig } from '../config/index.ts';
import { CdcError, ConfigError } from '../errors.ts';
import { createLogger, type Logger } from '../logger.ts';
import { sleep } from '../util/sleep.ts';
import { classify, type Classified } from './classify.ts';
import { stackEndpoints, type Endpoint } from './endpoints.ts';
import { backoffDelay, WaitLog } from './retry.ts';
import { ServiceGroup, type Service } from './service.ts';

/** What `build` gets besides the logger. */
export interface MainContext {
  /**
   * Ends the process for good: one line on stderr, services stopped (for at
   * most 10 s), exit 1. For errors met after start-up that the process
   * cannot recover from (a Kafka consumer that crashed without restarting),
   * so that a supervisor restarts it instead of it staying alive and idle.
   */
  fatal(err: unknown): void;
  /** Aborted on SIGINT/SIGTERM. */
  signal: AbortSignal;
  /** The servers this process talks to, for error messages and start-up lines. */
  endpoints: Endpoint[];
}

export interface MainOptions {
  /** The servers to name in start-up lines; defaults to the stack config's (SOURCE_DATABASE_URL, ...). */
  endpoints?: () => Endpoint[];
}

/**
 * Entry point shared by every always-on process (docs/operations.md, "Error
 * policy"). A ConfigError stops start-up with one line on stderr and exit 2.
 * A retriable start-up error (a server down or still starting) tears down
 * what was built and starts again, forever, with capped backoff and a
 * throttled "waiting for ..." line; a fatal one exits 1 with one line.
 * SIGINT/SIGTERM drain services in reverse start order; a second signal
 * exits at once.
 */
export async function runMain(name: string, build: (log: Logger, ctx: MainContext) => Promise<Service[]> | Service[], opts: MainOptions = {}): Promise<void> {
  const log = createLogger(name);
  let endpoints: Endpoint[];
  try {
    endpoints = opts.endpoints ? opts.endpoints() : stackEndpoints(loadStackConfig());
  } catch (err) {
    exitOnStartupError(name, err);
  }
  const stopController = new AbortController();
  let group: ServiceGroup | undefined;
  let exiting = false;
  let signals = 0;
  const onSignal = (sig: string) => {
    signals += 1;
    if (signals > 1) process.exit(130);
    log.info({ sig }, 'shutting down');
    stopController.abort();
    void (group?.stop() ?? Promise.resolve()).then(() => process.exit(0));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const fatal = (err: unknown) => {
    if (exiting || stopController.signal.aborted) return;
    exiting = true;
    const c = classify(err, { endpoints });
    log.fatal({ err: c.error, cause: (c.error.cause as Error | undefined)?.message }, 'fatal error; exiting');
    process.exitCode = 1;
    setTimeout(() => exitOnStartupError(name, c.error, 1), 10_000).unref();
    void (group?.stop() ?? Promise.resolve()).finally(() => exitOnStartupError(name, c.error, 1));
  };
  const ctx: MainContext = { fatal, signal: stopController.signal, endpoints };

  const waits = new WaitLog(log, 'start-up');
  for (let attempt = 0; ; attempt++) {
    if (stopController.signal.aborted) return;
    let services: Service[] = [];
    let c: Classified;
    try {
      services = await build(log, ctx);
      group = new ServiceGroup(log);
      await group.start(services);
      if (stopController.signal.aborted) return;
      waits.recovered();
      log.info('ready');
      return;
    } catch (err) {
      if (stopController.signal.aborted) return;
      c = classify(err, { endpoints });
      if (!c.retriable) {
        log.error({ err: c.error }, 'start-up failed');
        await group?.stop();
        exitOnStartupError(name, c.error);
      }
    }
    // Tear down everything this attempt built before the next one builds anew.
    await group?.stop();
    group = undefined;
    const delay = backoffDelay(attempt);
    waits.failed(c, delay);
    await sleep(delay, stopController.signal);
  }
}

/** One line on stderr and exit: 2 for configuration, `code` (1) for anything else. */
export function exitOnStartupError(name: string, err: unknown, code = 1): never {
  if (err instanceof ConfigError) {
    process.stderr.write(`${name}: config error: ${err.message}\n`);
    process.exit(2);
  }
  const e = err instanceof CdcError ? err : classify(err, { endpoints: safeEndpoints() }).error;
  process.stderr.write(`${name}: ${e.message} [${e.code}]\n`);
  process.exit(code);
}

function safeEndpoints(): Endpoint[] {
  try {
    return stackEndpoints(loadStackConfig());
  } catch {
    return [];
  }
}
