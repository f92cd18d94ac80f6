-- user_archive: soft-deletes a user (the partner's DELETE, or the dispatcher
-- on a webhook answered 403), as the original did: the user stops being
-- watched, its tag and email become free for a new user, its history stays.
--
-- Also moves the user's entries in si:ix:user, the admin search index
-- (ix_user() of prelude/index.lua, which names it).
--
-- KEYS[1]  si:{k}:user:<uid>
-- KEYS[2]  si:{k}:users          (the shard's set of users to watch)
-- KEYS[3]  si:changes            (stream read by watchers)
-- ARGV[1]  uid
-- ARGV[2]  k (the user's shard, as decimal text)
-- ARGV[3]  reason: "api" for a partner's request, else a short text kept in
--          last_error (for example "webhook answered 403")
-- Returns  1 when the user is archived now, 0 when it already was, -1 when
--          there is no such user (nothing is written)
--
-- Also deletes si:tag:<pid>:<code>:<lower tag> and si:email:<pid>:<code>:<lower
-- email>, found from the user hash, when they still name this user (they are
-- partner-wide indexes, outside the shard: this is a management script that
-- assumes the one Redis server, docs/architecture.md section 2). Tags and emails are lowered
-- with string.lower, ASCII only, exactly as the api does before writing them.
--
-- The shard's archived count (si:{k}:count, derived from KEYS[1], same {k})
-- goes up with the flag.
-- cursor_epoch goes up: a session that outlives this archive cannot write
-- the user's cursor again (cursor_baseline.lua).
--
-- Atomic so that no reader sees an archived user still holding its tag (a
-- create of the same tag would fail) or a live user missing from its index,
-- and so that the watcher's change record matches the write.
local user = KEYS[1]
local f = redis.call('HMGET', user, 'pid', 'code', 'tag', 'email', 'archived', 'username')
if not f[1] then
    return -1
end
if f[5] == '1' then
    return 0
end
local t = redis.call('TIME')
local now = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local uid = ARGV[1]
local prefix = 'si:'
local scope = f[1] .. ':' .. f[2] .. ':'
if f[3] and f[3] ~= '' then
    local key = prefix .. 'tag:' .. scope .. string.lower(f[3])
    if redis.call('GET', key) == uid then
        redis.call('DEL', key)
    end
end
if f[4] and f[4] ~= '' then
    local key = prefix .. 'email:' .. scope .. string.lower(f[4])
    if redis.call('GET', key) == uid then
        redis.call('DEL', key)
    end
end
local fields = {'archived', '1', 'state', 'archived', 'updated_at', now}
if ARGV[3] ~= 'api' then
    fields[#fields + 1] = 'last_error'
    fields[#fields + 1] = ARGV[3]
end
redis.call('HSET', user, unpack(fields))
local names = {tag = f[3], email = f[4], username = f[6]}
ix_user(uid, names, names)
redis.call('HINCRBY', (string.gsub(user, ':user:.*$', ':count', 1)), 'archived', 1)
redis.call('HINCRBY', user, 'cursor_epoch', 1)
redis.call('ZREM', KEYS[2], uid)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', '100000', '*', 'uid', uid, 'k', ARGV[2], 'op',
           'archive')
return 1
