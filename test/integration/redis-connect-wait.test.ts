import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { UnavailableError } from '../../src/errors.ts';
import { connectRedis } from '../../src/sinks/redis/connect.ts';
import { createRedisClient } from '../../src/sinks/redis/redis-client.ts';
import { createConnection } from 'node:net';
import { freePort } from '../helpers/throwaway-kafka.ts';

/**
 * A Redis Cluster client's connect() settles only once the cluster is
 * ready. The warehouse consumer's start-up must not wait on it for ever:
 * with `waitMs` connectRedis gives up waiting (a retriable
 * REDIS_UNAVAILABLE the caller logs and goes past) while the client keeps
 * trying. Here the cluster's only node is a redis-server stopped with
 * SIGSTOP: it accepts connections and answers nothing, as a node does in the
 * seconds a machine stalls.
 */
describe('connectRedis with a wait bound', () => {
  it('stops waiting for a cluster that never becomes ready, within the bound', { timeout: 20_000 }, async () => {
    const port = await freePort();
    const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    for (let i = 0; i < 100; i++) {
      const up = await new Promise<boolean>((r) => { const c = createConnection(port, '127.0.0.1', () => { c.end(); r(true); }); c.on('error', () => r(false)); });
      if (up) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    process.kill(server.pid!, 'SIGSTOP');
    const redis = createRedisClient({ redisUrl: `redis://127.0.0.1:${port}`, redisClusterNodes: [`127.0.0.1:${port}`] }, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true });
    redis.on('error', () => {});
    const t0 = Date.now();
    try {
      const err = await connectRedis(redis, { waitMs: 800 }).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(UnavailableError);
      expect((err as UnavailableError).code).toBe('REDIS_UNAVAILABLE');
      expect(Date.now() - t0).toBeGreaterThanOrEqual(750);
      expect(Date.now() - t0).toBeLessThan(5000);
      // Still trying in the background, not given up.
      expect(['connecting', 'reconnecting', 'connect']).toContain(redis.status);
    } finally {
      redis.disconnect();
      process.kill(server.pid!, 'SIGCONT');
      server.kill('SIGKILL');
    }
  });
});
