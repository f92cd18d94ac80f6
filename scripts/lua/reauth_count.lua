-- reauth_count: the users of shard k in state reauth_required, for the
-- api's superimap_users{state="reauth_required"} gauge. user_reauth adds a
-- user to the shard's reauth set; a user that left the state since
-- (connected again, disconnected, archived, deleted) is dropped from the set
-- here, so no other script has to. The work is one SMEMBERS and one HGET per
-- member: bounded by the users whose grant died, not by the shard's users.
--
-- KEYS[1]  si:{k}:reauth
-- ARGV[1]  si:{k}: (the shard's prefix: user hashes are <prefix>user:<uid>)
-- Returns  the number of members still reauth_required
local n = 0
for _, uid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if redis.call('HGET', ARGV[1] .. 'user:' .. uid, 'state') == 'reauth_required' then
        n = n + 1
    else
        redis.call('SREM', KEYS[1], uid)
    end
end
return n
