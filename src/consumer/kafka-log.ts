import kafkajs, { type logCreator } from 'kafkajs';
import type { Logger } from '../logger.ts';

/** Routes kafkajs's own logging into pino; kafkajs is chatty at INFO, so only warnings and errors pass. */
export function kafkaLogCreator(log: Logger): logCreator {
  const child = log.child({ component: 'kafkajs' });
  return () => ({ level, log: entry }) => {
    const { message, ...rest } = entry;
    if (level === kafkajs.logLevel.ERROR) child.error(rest, message);
    else if (level === kafkajs.logLevel.WARN) child.warn(rest, message);
  };
}
