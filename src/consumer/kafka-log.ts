import kafkajs, { type logCreator } from 'kafkajs';
import type { Logger } from '../logger.ts';

/**
 * While a broker is down, kafkajs logs an ERROR per connection attempt;
 * runMain's throttled "waiting for Kafka at ..." line (src/lifecycle/retry.ts)
 * already says so once every few seconds, so these go to debug.
 */
const CONNECTION_NOISE = /Failed to connect to seed broker|Connection error|ECONNREFUSED|ECONNRESET|Connection timeout|Closed connection|Broker not connected|Request .* timed out/i;

/** Routes kafkajs's own logging into pino; kafkajs is chatty at INFO, so only warnings and errors pass. */
export function kafkaLogCreator(log: Logger): logCreator {
  const child = log.child({ component: 'kafkajs' });
  return () => ({ level, log: entry }) => {
    const { message, ...rest } = entry;
    if (CONNECTION_NOISE.test(message)) child.debug(rest, message);
    else if (level === kafkajs.logLevel.ERROR) child.error(rest, message);
    else if (level === kafkajs.logLevel.WARN) child.warn(rest, message);
  };
}
