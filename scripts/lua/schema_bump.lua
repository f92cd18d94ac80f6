-- schema_bump: records that a migration finished: si:meta's schema_version
-- goes from ARGV[1] to ARGV[2], once none of KEYS[2..] (the keys the
-- migration converts) is left of type ARGV[3].
--
-- KEYS[1]     si:meta
-- KEYS[2..n]  the converted keys (si:{k}:users of every shard)
-- ARGV[1]     version before   ARGV[2] version after   ARGV[3] old type
-- Returns     the schema_version now (ARGV[2], or what another node set), or
--             an error naming the first key still of the old type
for i = 2, #KEYS do
    local t = redis.call('TYPE', KEYS[i])
    if (type(t) == 'table' and t.ok or t) == ARGV[3] then
        return redis.error_reply('not migrated: ' .. KEYS[i])
    end
end
local v = redis.call('HGET', KEYS[1], 'schema_version')
if v == ARGV[1] then
    redis.call('HSET', KEYS[1], 'schema_version', ARGV[2])
    return ARGV[2]
end
return v
