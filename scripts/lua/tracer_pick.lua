-- tracer_pick: tracer users of one shard a tracer mail may go to now.
--
-- KEYS[1]  si:{k}:tracer_users (uids with enable_tracer 1, prelude/user.lua)
-- KEYS[2]  si:{k}:users        (uids to watch: connected, not archived)
-- ARGV[1]  most users to look at (random members of KEYS[1])
-- Returns  a flat list, six strings per user: uid, code, email, username,
--          secret, oauth2_access_token (both sealed as stored). Members not
--          watched are skipped (they may come back); members whose hash is
--          gone or whose enable_tracer is no longer 1 leave KEYS[1].
--
-- One call per shard and round instead of a read of each user. The user
-- hashes are named after KEYS[1] (si:{k}:user:<uid>, the same slot).
local prefix = string.match(KEYS[1], '^(si:{[^}]*}:)tracer_users$')
if not prefix then
    return redis.error_reply('ERR tracer_pick: KEYS[1] is not si:{k}:tracer_users')
end
local out = {}
for _, uid in ipairs(redis.call('SRANDMEMBER', KEYS[1], tonumber(ARGV[1]) or 16)) do
    local f = redis.call('HMGET', prefix .. 'user:' .. uid, 'enable_tracer', 'code', 'email',
                         'username', 'secret', 'oauth2_access_token')
    if f[1] ~= '1' then
        redis.call('SREM', KEYS[1], uid)
    elseif admitted(KEYS[2], uid) == 1 then
        out[#out + 1] = uid
        for i = 2, 6 do
            out[#out + 1] = f[i] or ''
        end
    end
end
return out
