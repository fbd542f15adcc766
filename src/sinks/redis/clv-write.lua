-- Version-guarded write of one customer's CLV figures (absolute values,
-- never increments), so a delayed or repeated flush can never overwrite a
-- newer figure.
--
-- KEYS[1]  the CLV hash, <prefix>clv:<customer_id>
-- KEYS[2]  the deletion marker, <prefix>clv-deleted:<customer_id>; holds the
--          version of a removal so an older "set" cannot resurrect the hash
-- ARGV[1]  version (integer, from analytics.customer_lifetime_value.version)
-- ARGV[2]  'set' or 'del'
-- ARGV[3..] for 'set': field, value pairs (money as exact decimal strings)
--
-- Returns 1 when written, 0 when the stored version is the same or newer.
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
local deleted = tonumber(redis.call('GET', KEYS[2]) or '-1')
if deleted > current then current = deleted end
local version = tonumber(ARGV[1])
if version <= current then
  return 0
end
redis.call('DEL', KEYS[1])
if ARGV[2] == 'del' then
  redis.call('SET', KEYS[2], ARGV[1])
  return 1
end
redis.call('DEL', KEYS[2])
local fields = { 'version', ARGV[1] }
for i = 3, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(fields))
return 1
