import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Bearer-token check. Both sides are hashed to a fixed length before the
 * constant-time comparison, so neither the token's content nor its length
 * leaks through response timing.
 */
export function bearerChecker(token: string): (authorization: string | undefined) => boolean {
  const expected = digest(token);
  return (authorization) => {
    if (authorization === undefined) return false;
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization);
    if (!m) return false;
    return timingSafeEqual(digest(m[1]!), expected);
  };
}

/**
 * HTTP basic-auth check against one user:password, constant-time as the
 * bearer check (the schema registry's REGISTRY_BASIC_AUTH_USER_INFO).
 */
export function basicChecker(username: string, password: string): (authorization: string | undefined) => boolean {
  const expected = digest(`${username}:${password}`);
  return (authorization) => {
    if (authorization === undefined) return false;
    const m = /^Basic[ \t]+([A-Za-z0-9+/=]+)[ \t]*$/i.exec(authorization);
    if (!m) return false;
    return timingSafeEqual(digest(Buffer.from(m[1]!, 'base64').toString('utf8')), expected);
  };
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}
