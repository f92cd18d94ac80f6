-- user_import: a user brought over from the original SuperIMAP by
-- superimap-import, with its own connected_at and its mail cursor.
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
-- Returns  {'ok'}, {'exists'} (the uid is there: a second run),
--          {'conflict', 'tag'|'email'}, or {'missing'} when the connection is
--          gone or being deleted
--
-- The record is user_create.lua's, but connected_at is the original's and
-- no user_connected event is queued (the partner knows the user). Atomic so
-- that a user is imported whole or not at all, with its index entries, its
-- shard set entry and its cursor: a watcher that sees the user also sees
-- where its new mail starts.
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HGET', KEYS[1], 'deleting') == '1' then
    return {'missing'}
end
if redis.call('EXISTS', KEYS[5]) == 1 then
    return {'exists'}
end
local uid, k, email = ARGV[1], ARGV[2], ARGV[4]
local archived, connected_at = ARGV[7], ARGV[12]
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
if ARGV[15] ~= '' then
    redis.call('HSET', KEYS[8], 'uidvalidity', ARGV[15], 'last_uid', ARGV[16])
end
user_index(KEYS, uid, k, ARGV[9], email, archived, connected_at ~= '')
tracer_users(KEYS[6], uid, ARGV[8])
return {'ok'}
