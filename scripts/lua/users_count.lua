-- users_count: the users of shard k by state, for the api's
-- superimap_users{state} gauges. Every user is in exactly one state:
-- archived (archived=1), connected (in the shard's users zset: live with
-- credentials, watched or about to be), reauth_required (its grant died and
-- it has not connected again), or not connected (the rest: never connected,
-- or disconnected). The counts come from what the scripts keep, never from
-- the user hashes: si:{k}:count (users and archived, kept by the prelude's
-- user_index, user_archive, user_restore, user_update and
-- connection_delete), the users zset, and the reauth set, whose members that
-- left the state (connected again, disconnected, archived, deleted) are
-- dropped here, so no other script has to. The work is bounded by the users
-- whose grant died, not by the shard's users.
--
-- KEYS[1]  si:{k}:count
-- KEYS[2]  si:{k}:users
-- KEYS[3]  si:{k}:reauth
-- ARGV[1]  si:{k}: (the shard's prefix: user hashes are <prefix>user:<uid>)
-- Returns  {users, archived, connected, reauth_required}
local c = redis.call('HMGET', KEYS[1], 'users', 'archived')
local reauth = 0
for _, uid in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    if redis.call('HGET', ARGV[1] .. 'user:' .. uid, 'state') == 'reauth_required' and
        admitted(KEYS[2], uid) == 0 then
        reauth = reauth + 1
    else
        redis.call('SREM', KEYS[3], uid)
    end
end
return {tonumber(c[1] or '0'), tonumber(c[2] or '0'), redis.call('ZCARD', KEYS[2]), reauth}
