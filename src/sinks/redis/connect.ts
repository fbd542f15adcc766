import type { Redis } from 'ioredis';
import { AuthFailedError } from '../../errors.ts';

const REFUSED = /^(WRONGPASS|NOAUTH|NOPERM)\b/;

/**
 * Connects a lazyConnect client. ioredis reports a refused ACL user or
 * password only on its 'error' event and then rejects connect() with a bare
 * "Connection is closed", which reads as an outage and would be waited out
 * forever; here it is an AuthFailedError naming the settings instead.
 */
export async function connectRedis(redis: Redis): Promise<void> {
  let refused: Error | undefined;
  const onError = (e: Error) => { if (REFUSED.test(e.message)) refused = e; };
  redis.on('error', onError);
  try {
    await redis.connect();
  } catch (err) {
    if (refused) {
      redis.disconnect();
      const { host, port } = redis.options;
      throw new AuthFailedError(`authentication refused by Redis at ${host}:${port} (REDIS_URL): ${refused.message}; check REDIS_USERNAME / REDIS_PASSWORD`, { cause: refused });
    }
    throw err;
  } finally {
    redis.off('error', onError);
  }
}
