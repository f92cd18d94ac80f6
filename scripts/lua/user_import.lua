-- user_import: a user brought over from the original SuperIMAP by
-- superimap-import, with its own connected_at and its mail cursor.
--
-- Also moves the user's entries in si:ix:user, the admin search index
-- (ix_user() of prelude/index.lua, which names it).
--
-- KEYS[1]  si:conn:<pid>:<code>
-- KEYS[2]  si:conn:<pid>:<code>:users
-- KEYS[3]  si:tag:<pid>:<code>:<lower tag>
-- KEYS[4]  si:email:<pid>:<code>:<lower email> (any key when there is no email)
-- KEYS[5]  si:{k}:user:<uid>
-- KEYS[6]  si:{k}:users
-- KEYS[7]  si:changes
-- KEYS[8]  si:{k}:cur:<uid>
-- ARGV[1]  uid (derived from the original's id: a second run names the same user)
-- ARGV[2]  k                      ARGV[3]  tag
-- ARGV[4]  email ('' for none)    ARGV[5]  login username
-- ARGV[6]  secret (encrypted password or refresh token, or '')
-- ARGV[7]  archived (0|1)         ARGV[8]  enable_tracer (0|1)
-- ARGV[9]  lower tag              ARGV[10] pid      ARGV[11] code
-- ARGV[12] connected_at ms ('' when not connected)
-- ARGV[13] last_login_at ms or '' ARGV[14] last_email_at ms or ''
-- ARGV[15] UIDVALIDITY and ARGV[16] last UID of the cursor ('' for none:
--          the watcher sets the usual baseline on first sight)
-- To update a user a first run imported (the row changed in the original),
-- also:
-- KEYS[9]  si:tag:<pid>:<code>:<lower tag it has>
-- KEYS[10] si:email:<pid>:<code>:<lower email it has> (any key if none)
-- ARGV[17] its lower tag and ARGV[18] its lower email, as the importer read
--          them (KEYS[9], KEYS[10] were built from them)
-- Returns  {'ok'}, {'exists'} (the uid is there: a second run), {'updated'},
--          {'retry'} (the user changed since the importer read it),
--          {'conflict', 'tag'|'email'}, or {'missing'} when the connection is
--          gone or being deleted
--
-- An update writes the row's fields, moves the index entries with the tag,
-- email and archived state, and moves the cursor only forward: to the row's
-- when the user has none, or when it is further on in the same UIDVALIDITY
-- (the original announced more mail since the first run). A cursor the
-- fleet moved on, or set for another UIDVALIDITY, stays: mail is never
-- announced twice.
--
-- Both copy the connection's mailboxes into conn_mailboxes (issue #21).
--
-- The record is user_create.lua's, but connected_at is the original's and
-- no user_connected event is queued (the partner knows the user). Atomic so
-- that a user is imported whole or not at all, with its index entries, its
-- shard zset entry and its cursor: a watcher that sees the user also sees
-- where its new mail starts.
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HGET', KEYS[1], 'deleting') == '1' then
    return {'missing'}
end
local uid, k, email = ARGV[1], ARGV[2], ARGV[4]
local archived, connected_at = ARGV[7], ARGV[12]

-- Moves user's cursor to the row's when that is further on (see above).
local function cursor_forward()
    if ARGV[15] == '' then
        return
    end
    local c = redis.call('HMGET', KEYS[8], 'uidvalidity', 'last_uid')
    if c[1] and (c[1] ~= ARGV[15] or tonumber(c[2] or '0') >= tonumber(ARGV[16])) then
        return
    end
    redis.call('HSET', KEYS[8], 'uidvalidity', ARGV[15], 'last_uid', ARGV[16])
end

if redis.call('EXISTS', KEYS[5]) == 1 then
    if #KEYS < 10 then
        return {'exists'}
    end
    local f = redis.call('HMGET', KEYS[5], 'tag', 'email', 'archived', 'username')
    if string.lower(f[1] or '') ~= ARGV[17] or string.lower(f[2] or '') ~= ARGV[18] then
        return {'retry'}
    end
    local was_archived = f[3] == '1'
    if archived ~= '1' then
        local holder = redis.call('GET', KEYS[3])
        if holder and holder ~= uid then
            return {'conflict', 'tag'}
        end
        if email ~= '' then
            holder = redis.call('GET', KEYS[4])
            if holder and holder ~= uid then
                return {'conflict', 'email'}
            end
        end
    end
    if not was_archived then
        if redis.call('GET', KEYS[9]) == uid then
            redis.call('DEL', KEYS[9])
        end
        if ARGV[18] ~= '' and redis.call('GET', KEYS[10]) == uid then
            redis.call('DEL', KEYS[10])
        end
    end
    if archived ~= '1' then
        redis.call('SET', KEYS[3], uid)
        if email ~= '' then
            redis.call('SET', KEYS[4], uid)
        end
    end
    redis.call('ZREM', KEYS[2], ARGV[17] .. '\31' .. uid)
    redis.call('ZADD', KEYS[2], 0, ARGV[9] .. '\31' .. uid)
    local t = redis.call('TIME')
    local now = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
    redis.call('HSET', KEYS[5], 'tag', ARGV[3], 'email', email, 'username', ARGV[5], 'secret',
               ARGV[6], 'connected_at', connected_at, 'archived', archived, 'enable_tracer',
               ARGV[8], 'updated_at', now)
    copy_conn_mailboxes(KEYS[1], KEYS[5])
    if archived == '1' and not was_archived then
        redis.call('HSET', KEYS[5], 'state', 'archived')
    elseif archived ~= '1' and was_archived then
        redis.call('HSET', KEYS[5], 'state', 'idle', 'last_error', '')
    end
    if archived ~= '1' and connected_at ~= '' then
        admit(KEYS[6], uid)
    else
        redis.call('ZREM', KEYS[6], uid)
    end
    ix_user(uid, {tag = f[1], email = f[2], username = f[4]},
            {tag = ARGV[3], email = email, username = ARGV[5]})
    cursor_forward()
    redis.call('XADD', KEYS[7], 'MAXLEN', '~', '100000', '*', 'uid', uid, 'k', k, 'op', 'update')
    return {'updated'}
end
local taken = user_taken(KEYS, email, archived)
if taken then
    return {'conflict', taken}
end
local t = redis.call('TIME')
local now = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local state = 'idle'
if archived == '1' then
    state = 'archived'
end
redis.call('HSET', KEYS[5], 'uid', uid, 'pid', ARGV[10], 'code', ARGV[11], 'tag', ARGV[3],
           'email', email, 'username', ARGV[5], 'secret', ARGV[6], 'connected_at',
           connected_at, 'archived', archived, 'state', state, 'last_error', '',
           'last_login_at', ARGV[13], 'last_email_at', ARGV[14], 'created_at', now,
           'updated_at', now, 'enable_tracer', ARGV[8])
copy_conn_mailboxes(KEYS[1], KEYS[5])
cursor_forward()
user_index(KEYS, uid, k, ARGV[9], email, archived, connected_at ~= '')
ix_user(uid, nil, {tag = ARGV[3], email = email, username = ARGV[5]})
tracer_users(KEYS[6], uid, ARGV[8])
return {'ok'}
