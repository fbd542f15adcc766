import type { Redis } from 'ioredis';
import type { RedisClient } from './redis-client.ts';
import { AuthFailedError, UnavailableError } from '../../errors.ts';

const REFUSED = /^(WRONGPASS|NOAUTH|NOPERM)\b/;

/**
 * Connects a lazyConnect client. ioredis reports a refused ACL user or
 * password only on its 'error' event and then rejects connect() with a bare
 * "Connection is closed", which reads as an outage and would be waited out
 * forever; here it is an AuthFailedError naming the settings instead.
 */
export async function connectRedis(redis: RedisClient, o: { waitMs?: number } = {}): Promise<void> {
  let refused: Error | undefined;
  const onError = (e: Error) => { if (REFUSED.test(e.message)) refused = e; };
  redis.on('error', onError);
  const connecting = redis.connect().finally(() => redis.off('error', onError));
  let timer: NodeJS.Timeout | undefined;
  // A Redis Cluster client's connect() settles only once the cluster is ready, which
  // can take minutes while a replica takes over a master killed just before (seen in
  // a chaos run: a warehouse member waited in its start-up for 2-6 minutes). With
  // `waitMs` the caller goes on after that long; the client keeps connecting.
  const waited = o.waitMs === undefined ? undefined : new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new UnavailableError('REDIS_UNAVAILABLE', `Redis not ready after ${Math.round(o.waitMs! / 1000)} s; still connecting in the background`)), o.waitMs);
  });
  if (waited) connecting.catch(() => {});
  try {
    await (waited ? Promise.race([connecting, waited]) : connecting);
  } catch (err) {
    if (refused) {
      redis.disconnect();
      const where = redis.isCluster ? 'the Redis Cluster (REDIS_CLUSTER_NODES)' : `Redis at ${(redis as Redis).options.host}:${(redis as Redis).options.port} (REDIS_URL)`;
      throw new AuthFailedError(`authentication refused by ${where}: ${refused.message}; check REDIS_USERNAME / REDIS_PASSWORD`, { cause: refused });
    }
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
