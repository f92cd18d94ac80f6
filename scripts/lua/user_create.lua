-- user_create: a new user of a partner's connection.
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
-- KEYS[8]  si:partner:<pid>
-- KEYS[9]  si:{k}:evt:<eid>
-- KEYS[10] si:{k}:ready:<pid>
-- KEYS[11] si:{k}:ready_partners
-- ARGV[1]  uid (new, random)      ARGV[2]  k
-- ARGV[3]  kind: plain | oauth2 (the provider's auth)
-- ARGV[4]  tag                    ARGV[5]  email ('' for none)
-- ARGV[6]  login username         ARGV[7]  secret (encrypted password or refresh token, or '')
-- ARGV[8]  archived (0|1)         ARGV[9]  enable_tracer (0|1)
-- ARGV[10] lower tag              ARGV[11] pid      ARGV[12] code
-- ARGV[13] now ms: created_at, connected_at and the event's time
-- ARGV[14] event id <uid>.connected.<now>   ARGV[15] sha1 of the tag
-- ARGV[16] the user_connected payload (encrypted with AAD si:evt:<eid>)
-- ARGV[17] the user's own mailboxes (canonical JSON, proto/mailboxes.h; ''
--          for none: it inherits the connection's, copied into
--          conn_mailboxes here and by connection_mailboxes.lua)
-- Returns  {'ok', connected_at ms or '', queued (0|1)}, {'conflict',
--          'tag'|'email'}, or {'missing'} when the connection is gone or
--          being deleted
--
-- Uniqueness as the original: tag and email unique per connection,
-- case-insensitive, among non-archived users. Atomic so that of many
-- parallel creates of one tag exactly one wins, and a user never exists
-- without its index entries, its shard zset entry and the watchers' record;
-- a live user created connected queues user_connected in the same step, so
-- no failure of the api between two calls can lose the event.
-- Connected on save when the credentials are complete (PLAIN: username and
-- password; OAuth2: email and refresh token), as the original.
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HGET', KEYS[1], 'deleting') == '1' then
    return {'missing'}
end
local uid, k, kind = ARGV[1], ARGV[2], ARGV[3]
local email, username, secret = ARGV[5], ARGV[6], ARGV[7]
local archived = ARGV[8]
local taken = user_taken(KEYS, email, archived)
if taken then
    return {'conflict', taken}
end
local now = ARGV[13]
local complete = secret ~= '' and ((kind == 'plain' and username ~= '') or
    (kind == 'oauth2' and email ~= ''))
local connected_at = ''
if complete then
    connected_at = now
end
local state = 'idle'
if archived == '1' then
    state = 'archived'
end
redis.call('HSET', KEYS[5], 'uid', uid, 'pid', ARGV[11], 'code', ARGV[12], 'tag', ARGV[4],
           'email', email, 'username', username, 'secret', secret, 'connected_at',
           connected_at, 'archived', archived, 'state', state, 'last_error', '',
           'last_login_at', '', 'last_email_at', '', 'created_at', now, 'updated_at', now,
           'enable_tracer', ARGV[9])
if ARGV[17] ~= '' then
    redis.call('HSET', KEYS[5], 'mailboxes', ARGV[17])
end
copy_conn_mailboxes(KEYS[1], KEYS[5])
user_index(KEYS, uid, k, ARGV[10], email, archived, complete)
ix_user(uid, nil, {tag = ARGV[4], email = email, username = username})
tracer_users(KEYS[6], uid, ARGV[9])
local queued = 0
if complete and archived ~= '1' then
    queued = user_event(KEYS[8], KEYS[9], KEYS[10], KEYS[11], {
        type = 'user_connected', id = ARGV[14], pid = ARGV[11], uid = uid, code = ARGV[12],
        tag = ARGV[4], sha1 = ARGV[15], payload = ARGV[16], now = now})
end
return {'ok', connected_at, queued}
