import { loadStackConfig } from '../config/index.ts';
import { CdcError, ConfigError } from '../errors.ts';
import { StalledError } from '../health/watchdog.ts';
import { createLogger, type Logger } from '../logger.ts';
import { sleep } from '../util/sleep.ts';
import { classify, type Classified } from './classify.ts';
import { stackEndpoints, type Endpoint } from './endpoints.ts';
import { backoffDelay, WaitLog } from './retry.ts';
import { ServiceGroup, type Service } from './service.ts';

/** What `build` gets besides the logger. */
export interface MainContext {
  /**
   * Reports a failure met after start-up (a Kafka send that failed for
   * good, a consumer that crashed without restarting). A retriable one
   * tears the services down and builds them anew, as at start-up; any other
   * ends the process: one line on stderr, services stopped (for at most
   * 10 s), exit 1, so that a supervisor restarts it. Either way the process
   * never stays alive and idle.
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
  /**
   * Longest one start-up (build and start, retries included) may take
   * before the process exits 1 (code STALLED) for its supervisor to restart
   * it; 0 or absent: no bound. Read per start-up; a bad setting is left to
   * build to report. The progress watchdog covers a process once started;
   * this covers a start-up step that never settles (seen in a chaos run: a
   * warehouse member waiting in its Redis Cluster connect after a master kill).
   */
  startupBoundMs?: () => number;
}

/**
 * Entry point shared by every always-on process (docs/operations.md, "Error
 * policy"). A ConfigError stops start-up with one line on stderr and exit 2.
 * A retriable error, at start-up or reported later through `ctx.fatal`,
 * tears down what was built and builds it again, forever, with capped
 * backoff and a throttled "waiting for ..." line; a fatal one exits 1 with
 * one line. SIGINT/SIGTERM drain services in reverse start order; a second
 * signal exits at once.
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

  const exitFatal = async (c: Classified): Promise<never> => {
    log.fatal({ err: c.error }, 'fatal error; exiting');
    process.exitCode = 1;
    setTimeout(() => exitOnStartupError(name, c.error, 1), 10_000).unref();
    await group?.stop();
    exitOnStartupError(name, c.error, 1);
  };

  let waits = new WaitLog(log, 'start-up');
  for (let attempt = 0; ; attempt++) {
    if (stopController.signal.aborted) return;
    let report!: (err: unknown) => void;
    const failed = new Promise<unknown>((resolve) => { report = resolve; });
    // One context per incarnation: a late report from torn-down services is ignored.
    let live = true;
    const ctx: MainContext = { fatal: (err) => { if (live) report(err); }, signal: stopController.signal, endpoints };
    let c: Classified;
    const bound = startupBound(opts);
    const startupTimer = bound > 0 ? setTimeout(() => {
      const err = new StalledError(`start-up did not finish in ${Math.round(bound / 1000)} s`);
      log.fatal({ err: err.message, code: err.code, boundMs: bound }, 'start-up stalled; exiting');
      exitOnStartupError(name, err, 1);
    }, bound) : undefined;
    startupTimer?.unref();
    try {
      const services = await build(log, ctx);
      group = new ServiceGroup(log);
      await group.start(services);
      clearTimeout(startupTimer);
      if (stopController.signal.aborted) return;
      waits.recovered();
      log.info('ready');
      attempt = -1;
      const err = await failed;
      if (stopController.signal.aborted) return;
      c = classify(err, { endpoints });
      if (!c.retriable) await exitFatal(c);
      log.error({ err: c.error }, 'failed after start-up; restarting the services');
      waits = new WaitLog(log, 'restart');
    } catch (err) {
      clearTimeout(startupTimer);
      if (stopController.signal.aborted) return;
      c = classify(err, { endpoints });
      if (!c.retriable) {
        log.error({ err: c.error }, 'start-up failed');
        await exitFatal(c);
      }
    }
    live = false;
    // Tear down everything this incarnation built before the next one builds anew.
    await group?.stop();
    group = undefined;
    const delay = backoffDelay(Math.max(0, attempt));
    waits.failed(c, delay);
    await sleep(delay, stopController.signal);
  }
}

function startupBound(opts: MainOptions): number {
  try {
    return opts.startupBoundMs?.() ?? 0;
  } catch {
    return 0;
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
