-- users_watched: the users to watch of every shard, for the admin fleet
-- view's users_total.
--
-- KEYS     si:{k}:users of each shard k
-- Returns  the sum of their sizes
--
-- Read-only; a script only so that one call reads every shard's set.
local n = 0
for _, key in ipairs(KEYS) do
    n = n + redis.call('ZCARD', key)
end
return n
