import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * Builds the process logger. Secrets are redacted by path so that a config
 * object or connection options can be logged whole without leaking them.
 */
export function createLogger(name: string, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({
    name,
    level,
    redact: {
      paths: ['password', '*.password', 'token', '*.token', 'authToken', '*.authToken', 'headers.authorization', '*.headers.authorization', 'connectionString', '*.connectionString'],
      censor: '***',
    },
  });
}
