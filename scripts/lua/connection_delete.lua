-- connection_delete: hard-deletes a connection with all its users, their
-- cursors, leases and queued events, one batch of users per call (the api
-- calls it until it answers 'done').
--
-- Also moves the user's entries in si:ix:user, the admin search index
-- (ix_user() of prelude/index.lua, which names it).
--
-- KEYS[1]  si:conn:<pid>:<code>
-- KEYS[2]  si:conn:<pid>:<code>:users
-- KEYS[3]  si:partner:<pid>:conns
-- KEYS[4]  si:provider:<code>
-- KEYS[5]  si:changes
-- then for each of the n users of this batch, 3 keys:
--          si:{k}:user:<uid>, si:{k}:cur:<uid>, si:{k}:lease:<uid> (and
--          the Gmail ids si:{k}:gm:<uid> derived from the first)
-- then for each of the m shards those users are in, 6 keys:
--          si:{k}:users, si:{k}:ready:<pid>, si:{k}:ready_partners,
--          si:{k}:retry, si:{k}:inflight, si:{k}:dead
-- ARGV[1]  pid
-- ARGV[2]  code
-- ARGV[3]  n
-- ARGV[4]  m
-- ARGV[5 .. 4+2n]      uid, zset member ("<lower tag>\x1f<uid>") of each user
-- ARGV[5+2n .. 4+2n+m] k of each shard, in the order of its keys
-- Returns  {'missing'}, or {'more'|'done', removed event id, ...}: the api
--          deletes the hashes of the removed events (si:{k}:evt:<id>); 'done'
--          when the connection itself is gone.
--
-- The first call marks the connection deleting=1, so it is invisible to the
-- API and takes no new users from then on. Each batch is atomic: a user
-- vanishes with its indexes (si:tag:, si:email:, found from its hash and
-- deleted when they still name it), its shard zset entry, its shard's counts
-- (si:{k}:count, derived from its key, same {k}), its queued event ids and a
-- 'delete' record for watchers, never half of them.
if redis.call('EXISTS', KEYS[1]) == 0 then
    return {'missing'}
end
redis.call('HSET', KEYS[1], 'deleting', '1')
local pid, code = ARGV[1], ARGV[2]
local n, m = tonumber(ARGV[3]), tonumber(ARGV[4])
local gone = {}
local shard_of = {}
for i = 0, n - 1 do
    local uid, member = ARGV[5 + 2 * i], ARGV[6 + 2 * i]
    local user = KEYS[6 + 3 * i]
    local f = redis.call('HMGET', user, 'tag', 'email', 'pid', 'code', 'archived', 'username')
    if f[3] then
        local count = string.gsub(user, ':user:.*$', ':count', 1)
        redis.call('HINCRBY', count, 'users', -1)
        if f[5] == '1' then
            redis.call('HINCRBY', count, 'archived', -1)
        end
        ix_user(uid, {tag = f[1], email = f[2], username = f[6]}, nil)
    end
    if f[3] == pid and f[4] == code then
        local scope = 'si:tag:' .. pid .. ':' .. code .. ':'
        if f[1] and f[1] ~= '' and redis.call('GET', scope .. string.lower(f[1])) == uid then
            redis.call('DEL', scope .. string.lower(f[1]))
        end
        scope = 'si:email:' .. pid .. ':' .. code .. ':'
        if f[2] and f[2] ~= '' and redis.call('GET', scope .. string.lower(f[2])) == uid then
            redis.call('DEL', scope .. string.lower(f[2]))
        end
    end
    redis.call('DEL', user, KEYS[7 + 3 * i], KEYS[8 + 3 * i],
               (string.gsub(user, ':user:', ':gm:', 1)))
    redis.call('ZREM', KEYS[2], member)
    gone[uid] = true
    shard_of[uid] = string.match(user, '^si:{(%d+)}:')
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', '100000', '*', 'uid', uid, 'k',
               shard_of[uid] or '', 'op', 'delete')
end
local removed = {}
local function owned(id)
    return gone[string.sub(id, 1, 24)] == true and string.sub(id, 25, 25) == '.'
end
local base = 5 + 3 * n
for j = 0, m - 1 do
    local users, ready, partners = KEYS[base + 1 + 6 * j], KEYS[base + 2 + 6 * j],
        KEYS[base + 3 + 6 * j]
    for uid, _ in pairs(gone) do
        redis.call('ZREM', users, uid)
    end
    for _, id in ipairs(redis.call('LRANGE', ready, 0, -1)) do
        if owned(id) then
            redis.call('LREM', ready, 0, id)
            removed[#removed + 1] = id
        end
    end
    if redis.call('LLEN', ready) == 0 then
        redis.call('LREM', partners, 0, pid)
    end
    for z = 4, 6 do
        local zkey = KEYS[base + z + 6 * j]
        for _, id in ipairs(redis.call('ZRANGE', zkey, 0, -1)) do
            if owned(id) then
                redis.call('ZREM', zkey, id)
                removed[#removed + 1] = id
            end
        end
    end
end
local status = 'more'
if redis.call('ZCARD', KEYS[2]) == 0 then
    redis.call('DEL', KEYS[1], KEYS[2])
    redis.call('SREM', KEYS[3], code)
    if redis.call('EXISTS', KEYS[4]) == 1 then
        redis.call('HINCRBY', KEYS[4], 'connections_count', -1)
    end
    status = 'done'
end
local out = {status}
for _, id in ipairs(removed) do
    out[#out + 1] = id
end
return out
