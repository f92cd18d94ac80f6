-- meta_init: reads si:meta, creating it on the very first start of a fleet.
--
-- KEYS[1]  si:meta
-- ARGV[1]  schema version this binary speaks
-- ARGV[2]  shard count this binary was configured with
-- ARGV[3]  version string of the binary (recorded once, for operators)
-- Returns  {schema_version, shards, created_at_ms, created_now (1|0)}
--
-- Atomic so that two nodes starting at once on an empty Redis cannot write
-- different shard counts: the first one fixes it, the second reads it back and
-- refuses to start if it disagrees.
local meta = KEYS[1]
if redis.call('EXISTS', meta) == 1 then
    local v = redis.call('HMGET', meta, 'schema_version', 'shards', 'created_at')
    return {v[1] or '', v[2] or '', v[3] or '', 0}
end
local t = redis.call('TIME')
local now = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
redis.call('HSET', meta, 'schema_version', ARGV[1], 'shards', ARGV[2], 'created_at', now,
           'created_by', ARGV[3])
return {ARGV[1], ARGV[2], now, 1}
