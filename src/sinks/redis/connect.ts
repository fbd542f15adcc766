import type { Redis } from 'ioredis';
import type { RedisClient } from './redis-client.ts';
import { AuthFailedError } from '../../errors.ts';

const REFUSED = /^(WRONGPASS|NOAUTH|NOPERM)\b/;

/**
 * Connects a lazyConnect client. ioredis reports a refused ACL user or
 * password only on its 'error' event and then rejects connect() with a bare
 * "Connection is closed", which reads as an outage and would be waited out
 * forever; here it is an AuthFailedError naming the settings instead.
 */
export async function connectRedis(redis: RedisClient): Promise<void> {
  let refused: Error | undefined;
  const onError = (e: Error) => { if (REFUSED.test(e.message)) refused = e; };
  redis.on('error', onError);
  try {
    await redis.connect();
  } catch (err) {
    if (refused) {
      redis.disconnect();
      const where = redis.isCluster ? 'the Redis Cluster (REDIS_CLUSTER_NODES)' : `Redis at ${(redis as Redis).options.host}:${(redis as Redis).options.port} (REDIS_URL)`;
      throw new AuthFailedError(`authentication refused by ${where}: ${refused.message}; check REDIS_USERNAME / REDIS_PASSWORD`, { cause: refused });
    }
    throw err;
  } finally {
    redis.off('error', onError);
  }
}
