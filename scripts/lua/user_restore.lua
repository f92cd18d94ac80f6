-- user_restore: brings an archived user back (the original's PUT with only
-- archived=false): watched again when still connected, its tag and email
-- taken again.
--
-- Also moves the user's entries in si:ix:user, the admin search index
-- (ix_user() of prelude/index.lua, which names it).
--
-- KEYS[1]  si:{k}:user:<uid>
-- KEYS[2]  si:{k}:users
-- KEYS[3]  si:changes
-- KEYS[4]  si:tag:<pid>:<code>:<lower tag>
-- KEYS[5]  si:email:<pid>:<code>:<lower email> (any key when there is no email)
-- ARGV[1]  uid   ARGV[2]  k
-- ARGV[3]  lower tag and ARGV[4] lower email the api read (KEYS[4], KEYS[5])
-- Returns  'ok', 'live' (was not archived), 'missing', 'retry' (the user
--          changed since the api read it), 'conflict_tag' or 'conflict_email'
--          (a live user took it meanwhile: nothing is written)
--
-- A restored user is watched from new mail on, like a new one: its cursor
-- si:{k}:cur:<uid> (derived from KEYS[1], same {k} tag) is deleted, so the
-- watcher that takes it up sets a new baseline and what arrived while it was
-- archived is never announced. Its cursor_epoch goes up (as at the archive),
-- so no session of before the restore can put the old cursor back
-- (cursor_baseline.lua): an epoch is never used twice. The shard's archived
-- count (si:{k}:count, derived the same way) goes down with the flag.
--
-- Atomic so that a restore and a create of the same tag cannot both win, and
-- no watcher sees the restored user with its old cursor.
local f = redis.call('HMGET', KEYS[1], 'tag', 'email', 'archived', 'connected_at', 'username')
if not f[1] then
    return 'missing'
end
if string.lower(f[1]) ~= ARGV[3] or string.lower(f[2] or '') ~= ARGV[4] then
    return 'retry'
end
if f[3] ~= '1' then
    return 'live'
end
local uid = ARGV[1]
local holder = redis.call('GET', KEYS[4])
if holder and holder ~= uid then
    return 'conflict_tag'
end
local email = f[2] or ''
if email ~= '' then
    holder = redis.call('GET', KEYS[5])
    if holder and holder ~= uid then
        return 'conflict_email'
    end
end
local t = redis.call('TIME')
local now = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
redis.call('SET', KEYS[4], uid)
if email ~= '' then
    redis.call('SET', KEYS[5], uid)
end
redis.call('HSET', KEYS[1], 'archived', '0', 'state', 'idle', 'last_error', '', 'updated_at',
           now)
redis.call('HINCRBY', KEYS[1], 'cursor_epoch', 1)
local names = {tag = f[1], email = email, username = f[5]}
ix_user(uid, names, names)
redis.call('DEL', (string.gsub(KEYS[1], ':user:', ':cur:', 1)))
redis.call('HINCRBY', (string.gsub(KEYS[1], ':user:.*$', ':count', 1)), 'archived', -1)
if f[4] and f[4] ~= '' then
    admit(KEYS[2], uid)
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', '100000', '*', 'uid', uid, 'k', ARGV[2], 'op',
           'restore')
return 'ok'
