-- user_connect: the end of a connect page that worked (an OAuth2 grant from
-- the callback, or a PLAIN password the IMAP server just accepted): stores
-- the user's credentials, marks it connected and queues user_connected.
--
-- Also moves the user's entries in si:ix:user, the admin search index
-- (ix_user() of prelude/index.lua, which names it).
--
-- KEYS[1]  si:{k}:user:<uid>
-- KEYS[2]  si:{k}:users
-- KEYS[3]  si:changes
-- KEYS[4]  si:email:<pid>:<code>:<lower new email> (any key when the email stays)
-- KEYS[5]  si:partner:<pid>
-- KEYS[6]  si:{k}:evt:<eid>
-- KEYS[7]  si:{k}:ready:<pid>
-- KEYS[8]  si:{k}:ready_partners
-- KEYS[9]  si:conn:<pid>:<code> (its mailboxes are copied into the user's
--          conn_mailboxes, issue #21)
-- ARGV[1]  uid       ARGV[2]  k        ARGV[3]  pid      ARGV[4]  code
-- ARGV[5]  tag as the api read it (the event's payload names it)
-- ARGV[6]  has email (0|1)             ARGV[7]  email
-- ARGV[8]  has username (0|1)          ARGV[9]  username
-- ARGV[10] secret (encrypted refresh token or password)
-- ARGV[11] oauth2_access_token (encrypted; '' for PLAIN)
-- ARGV[12] oauth2_expires_at (ms; '' for PLAIN)
-- ARGV[13] now ms: connected_at, and the event's time
-- ARGV[14] event id <uid>.connected.<now>   ARGV[15] sha1 of the tag
-- ARGV[16] the event's payload (encrypted with AAD si:evt:<eid>)
-- Returns  {'ok', queued (0|1)}, {'gone'} (no such user of that partner and
--          connection, or archived), {'retry'} (its tag changed since the
--          api read it), {'conflict', 'email'} (another live user of the
--          connection has that email)
--
-- Atomic so that a user is connected exactly when its partner hears of it:
-- the credentials, connected_at, the shard's set of users to watch, the
-- watchers' change record and the user_connected event move together.
local user = KEYS[1]
local f = redis.call('HMGET', user, 'pid', 'code', 'tag', 'email', 'archived', 'username')
if not f[1] or f[1] ~= ARGV[3] or f[2] ~= ARGV[4] or f[5] == '1' then
    return {'gone'}
end
if f[3] ~= ARGV[5] then
    return {'retry'}
end
local uid, pid, code = ARGV[1], ARGV[3], ARGV[4]
local old_email = f[4] or ''
local email = old_email
if ARGV[6] == '1' then
    email = ARGV[7]
end
if string.lower(email) ~= string.lower(old_email) then
    if email ~= '' then
        local holder = redis.call('GET', KEYS[4])
        if holder and holder ~= uid then
            return {'conflict', 'email'}
        end
    end
    if old_email ~= '' then
        local old_key = 'si:email:' .. pid .. ':' .. code .. ':' .. string.lower(old_email)
        if redis.call('GET', old_key) == uid then
            redis.call('DEL', old_key)
        end
    end
    if email ~= '' then
        redis.call('SET', KEYS[4], uid)
    end
end
local now = ARGV[13]
local fields = {'email', email, 'secret', ARGV[10], 'oauth2_access_token', ARGV[11],
                'oauth2_expires_at', ARGV[12], 'connected_at', now, 'state', 'idle',
                'last_error', '', 'updated_at', now}
if ARGV[8] == '1' then
    fields[#fields + 1] = 'username'
    fields[#fields + 1] = ARGV[9]
end
redis.call('HSET', user, unpack(fields))
copy_conn_mailboxes(KEYS[9], user)
local username = f[6]
if ARGV[8] == '1' then
    username = ARGV[9]
end
ix_user(uid, {tag = f[3], email = old_email, username = f[6]},
        {tag = f[3], email = email, username = username})
admit(KEYS[2], uid)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', '100000', '*', 'uid', uid, 'k', ARGV[2], 'op', 'update')
return {'ok', user_event(KEYS[5], KEYS[6], KEYS[7], KEYS[8], {
    type = 'user_connected', id = ARGV[14], pid = pid, uid = uid, code = code, tag = ARGV[5],
    sha1 = ARGV[15], payload = ARGV[16], now = now})}
