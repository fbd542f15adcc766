import { describe, expect, it } from 'vitest';
import { matchClvUrl } from '../../src/api/fast-lane.ts';

/** Which URLs the fast lane takes; everything else must reach Fastify untouched. */
describe('matchClvUrl', () => {
  it.each([
    ['/customers/42/clv', { id: '42', as_of: undefined }],
    ['/customers/42/clv/', { id: '42', as_of: undefined }],
    ['/customers/42/clv?', { id: '42', as_of: undefined }],
    ['/customers/007/clv', { id: '007', as_of: undefined }],
    ['/customers/9223372036854775808/clv', { id: '9223372036854775808', as_of: undefined }],
    ['/customers/42/clv?as_of=2024-03-01T00:00:00Z', { id: '42', as_of: '2024-03-01T00:00:00Z' }],
    ['/customers/42/clv/?as_of=2024-03-01', { id: '42', as_of: '2024-03-01' }],
    ['/customers/42/clv?as_of=', { id: '42', as_of: '' }],
    ['/customers/42/clv?as_of=yesterday', { id: '42', as_of: 'yesterday' }],
    [`/customers/${'1'.repeat(200)}/clv`, { id: '1'.repeat(200), as_of: undefined }],
  ])('takes %s', (url, expected) => {
    expect(matchClvUrl(url)).toEqual(expected);
  });

  it.each([
    '/customers/abc/clv', '/customers/-1/clv', '/customers/1.5/clv', '/customers/%20/clv', '/customers/%31/clv',
    '/customers//clv', '/customers/42/clv//', '/customers/42/clvx', '/customers/42/CLV', '/Customers/42/clv',
    '/customers/42', '/customers/top', '/customers/42/clv/x', '/customers/42/clv#f', '/customers/42/clv;x',
    `/customers/${'1'.repeat(201)}/clv`, 'http://host/customers/42/clv', '//customers/42/clv',
    '/customers/42/clv?as_of=2024-05-01T01:00:00%2B01:00', '/customers/42/clv?as_of=2024-05-01T01:00:00+01:00',
    '/customers/42/clv?as_of=a&as_of=b', '/customers/42/clv?foo=1', '/customers/42/clv?as_of', '/customers/42/clv?AS_OF=x',
    '/customers/42/clv?as_of=a=b', '/customers/42/clv??as_of=x',
  ])('leaves %s to Fastify', (url) => {
    expect(matchClvUrl(url)).toBeUndefined();
  });
});
