-- schema_users_zset: schema 1 -> 2 for one shard. Schema 1 kept the users to
-- watch in a set; schema 2 keeps them in a zset scored by admission (ms, see
-- prelude/admit.lua), the order in which watchers place them. The score of a
-- user listed before is its connected_at (the time it last became one to
-- watch, when known; else 0, ahead of everyone admitted after the upgrade).
--
-- KEYS[1]  si:{k}:users
-- ARGV[1]  si:{k}: (the shard's key prefix; its user hashes are
--          si:{k}:user:<uid>, the same slot)
-- Returns  the number of users moved (0 when the key is not a set: already a
--          zset, or empty), so running it twice or on two nodes at once is
--          harmless
local t = redis.call('TYPE', KEYS[1])
if (type(t) == 'table' and t.ok or t) ~= 'set' then
    return 0
end
local members = redis.call('SMEMBERS', KEYS[1])
local scored = {}
for i, uid in ipairs(members) do
    local at = tonumber(redis.call('HGET', ARGV[1] .. 'user:' .. uid, 'connected_at') or '') or 0
    scored[#scored + 1] = at
    scored[#scored + 1] = uid
end
redis.call('DEL', KEYS[1])
for i = 1, #scored, 2000 do
    redis.call('ZADD', KEYS[1], unpack(scored, i, math.min(i + 1999, #scored)))
end
return #members
