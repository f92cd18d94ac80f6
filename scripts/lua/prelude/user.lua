-- prelude/user: local functions that scripts/embed-lua.sh puts before
-- user_create.lua, user_import.lua, user_update.lua and user_connect.lua
-- (this file is not a script of its own): what a user's record needs besides
-- its hash, written once.
--
-- Both scripts take the same first seven KEYS: si:conn:<pid>:<code>, its
-- :users zset, si:tag:<pid>:<code>:<lower tag>, si:email:<pid>:<code>:<lower
-- email>, si:{k}:user:<uid>, si:{k}:users and si:changes.

-- Returns 'tag' or 'email' when a live user of the connection already holds
-- the new user's, else nil. Archived users hold neither (as the original:
-- uniqueness is among non-archived users only).
local function user_taken(keys, email, archived)
    if archived == '1' then
        return nil
    end
    if redis.call('EXISTS', keys[3]) == 1 then
        return 'tag'
    end
    if email ~= '' and redis.call('EXISTS', keys[4]) == 1 then
        return 'email'
    end
    return nil
end

-- Enters new user uid of shard k (its hash written) in the indexes: the
-- connection's user list and count; the shard's counts (si:{k}:count,
-- users and archived, read by users_count.lua; derived from the user's key,
-- same {k}); when live, its tag and email keys and, when connected, its
-- shard's users zset (the watchers' list); and records the creation in
-- si:changes.
local function user_index(keys, uid, k, ltag, email, archived, connected)
    redis.call('ZADD', keys[2], 0, ltag .. '\31' .. uid)
    redis.call('HINCRBY', keys[1], 'users_count', 1)
    local count = string.gsub(keys[5], ':user:.*$', ':count', 1)
    redis.call('HINCRBY', count, 'users', 1)
    if archived == '1' then
        redis.call('HINCRBY', count, 'archived', 1)
    end
    if archived ~= '1' then
        redis.call('SET', keys[3], uid)
        if email ~= '' then
            redis.call('SET', keys[4], uid)
        end
        if connected then
            admit(keys[6], uid)
        end
    end
    redis.call('XADD', keys[7], 'MAXLEN', '~', '100000', '*', 'uid', uid, 'k', k, 'op', 'create')
end

-- Keeps uid in si:{k}:tracer_users (named after users_key, si:{k}:users: the
-- same slot) exactly when its enable_tracer is '1', so superimap-dispatcher's
-- tracer sender finds a shard's tracer users without scanning its users
-- (it drops those not connected or archived when it reads them).
local function tracer_users(users_key, uid, enable_tracer)
    local key = string.gsub(users_key, ':users$', ':tracer_users')
    if enable_tracer == '1' then
        redis.call('SADD', key, uid)
    else
        redis.call('SREM', key, uid)
    end
end

-- Copies the connection's mailbox list (field mailboxes of conn, the
-- si:conn:<pid>:<code> hash) into the user's conn_mailboxes, or deletes it
-- when the connection has none: watchers read a user's lists from its own
-- hash only (issue #21; connection_mailboxes.lua keeps the copies current).
local function copy_conn_mailboxes(conn, user)
    local list = redis.call('HGET', conn, 'mailboxes')
    if list then
        redis.call('HSET', user, 'conn_mailboxes', list)
    else
        redis.call('HDEL', user, 'conn_mailboxes')
    end
end
