-- connection_mailboxes: copies a connection's `mailboxes` into the
-- `conn_mailboxes` of one chunk of its users (issue #21), after an update of
-- the connection set or reset it. The api calls it over the connection's
-- users zset, at most 500 users a call, so Redis is never blocked long.
--
-- KEYS[1]  si:conn:<pid>:<code>
-- KEYS[2]  si:changes
-- then for each of the n users of this chunk, 2 keys:
--          si:{k}:user:<uid>, si:{k}:users
-- ARGV[1]  pid      ARGV[2]  code     ARGV[3]  n
-- ARGV[4 .. 3+2n] uid and k (its shard) of each user, in the order of its keys
-- Returns  {'ok', users changed, changes recorded}, or {'missing'} when the
--          connection is gone or being deleted
--
-- It copies what the connection holds now, not a value the api passes, so
-- chunks of two updates racing each other, a retry after a failure part way
-- and a user created meanwhile (user_create copies it too) all end with
-- every user holding the connection's latest list: running it again changes
-- nothing. A user whose copy changed gets an 'update' record in si:changes
-- when it is watched (in its shard's users zset) and has no list of its own
-- (its own `mailboxes` override the connection's, so its watcher has nothing
-- to reload). Atomic per chunk: a copy never changes without its record.
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HGET', KEYS[1], 'deleting') == '1' then
    return {'missing'}
end
local list = redis.call('HGET', KEYS[1], 'mailboxes')
local pid, code, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local changed, recorded = 0, 0
for i = 0, n - 1 do
    local uid, k = ARGV[4 + 2 * i], ARGV[5 + 2 * i]
    local user, users = KEYS[3 + 2 * i], KEYS[4 + 2 * i]
    local f = redis.call('HMGET', user, 'pid', 'code', 'conn_mailboxes', 'mailboxes')
    if f[1] == pid and f[2] == code and f[3] ~= list then
        if list then
            redis.call('HSET', user, 'conn_mailboxes', list)
        else
            redis.call('HDEL', user, 'conn_mailboxes')
        end
        changed = changed + 1
        if not f[4] and redis.call('ZSCORE', users, uid) then
            redis.call('XADD', KEYS[2], 'MAXLEN', '~', '100000', '*', 'uid', uid, 'k', k,
                       'op', 'update')
            recorded = recorded + 1
        end
    end
end
return {'ok', changed, recorded}
