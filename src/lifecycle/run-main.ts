import { CdcError, ConfigError } from '../errors.ts';
import { createLogger, type Logger } from '../logger.ts';
import { ServiceGroup, type Service } from './service.ts';

/**
 * Entry point shared by every process. A ConfigError stops start-up with one
 * line on stderr and exit code 2; SIGINT/SIGTERM drain services in reverse
 * start order; a second signal exits at once.
 */
export async function runMain(name: string, build: (log: Logger) => Promise<Service[]> | Service[]): Promise<void> {
  const log = createLogger(name);
  let services: Service[];
  try {
    services = await build(log);
  } catch (err) {
    exitOnStartupError(name, err);
  }
  const group = new ServiceGroup(log);
  let signals = 0;
  const onSignal = (sig: string) => {
    signals += 1;
    if (signals > 1) process.exit(130);
    log.info({ sig }, 'shutting down');
    void group.stop().then(() => process.exit(0));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await group.start(services);
    log.info('ready');
  } catch (err) {
    log.error({ err }, 'start-up failed');
    await group.stop();
    exitOnStartupError(name, err);
  }
}

export function exitOnStartupError(name: string, err: unknown): never {
  if (err instanceof ConfigError) {
    process.stderr.write(`${name}: config error: ${err.message}\n`);
    process.exit(2);
  }
  const code = err instanceof CdcError ? ` [${err.code}]` : '';
  process.stderr.write(`${name}: ${err instanceof Error ? err.message : String(err)}${code}\n`);
  process.exit(1);
}
