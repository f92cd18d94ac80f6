-- user_disconnect: the disconnect page: clears the user's credentials (the
-- refresh token or password, the access token; for OAuth2 also the email,
-- which came from the provider, as the original did), so the watchers drop
-- it, and queues user_disconnected when it was connected, or reauth_required
-- (the partner was told it must connect again: now it will not; its state
-- is cleared).
--
-- Also moves the user's entries in si:ix:user, the admin search index
-- (ix_user() of prelude/index.lua, which names it).
--
-- KEYS[1]  si:{k}:user:<uid>
-- KEYS[2]  si:{k}:users
-- KEYS[3]  si:changes
-- KEYS[4]  si:partner:<pid>
-- KEYS[5]  si:{k}:evt:<eid>
-- KEYS[6]  si:{k}:ready:<pid>
-- KEYS[7]  si:{k}:ready_partners
-- ARGV[1]  uid       ARGV[2]  k        ARGV[3]  pid      ARGV[4]  code
-- ARGV[5]  clear the email (1 for OAuth2, else 0)
-- ARGV[6]  now ms    ARGV[7]  event id <uid>.disconnected.<now>
-- ARGV[8]  sha1 of the tag             ARGV[9]  tag as the api read it
-- ARGV[10] the event's payload (encrypted with AAD si:evt:<eid>)
-- Returns  {'ok', was connected (0|1), queued (0|1)}, {'gone'} (no such
--          user of that partner and connection), {'retry'} (its tag
--          changed since the api read it)
--
-- Atomic for the reason user_connect is: the user stops being connected
-- exactly when its partner is told.
local user = KEYS[1]
local f = redis.call('HMGET', user, 'pid', 'code', 'tag', 'email', 'archived', 'connected_at',
                     'state', 'username')
if not f[1] or f[1] ~= ARGV[3] or f[2] ~= ARGV[4] then
    return {'gone'}
end
if f[3] ~= ARGV[9] then
    return {'retry'}
end
local uid, pid, code, now = ARGV[1], ARGV[3], ARGV[4], ARGV[6]
local reauth = f[7] == 'reauth_required'
local was = (f[6] or '') ~= '' or reauth
local fields = {'secret', '', 'oauth2_access_token', '', 'oauth2_expires_at', '',
                'connected_at', '', 'updated_at', now}
if reauth then
    fields[#fields + 1] = 'state'
    fields[#fields + 1] = ''
end
if ARGV[5] == '1' and (f[4] or '') ~= '' then
    local key = 'si:email:' .. pid .. ':' .. code .. ':' .. string.lower(f[4])
    if redis.call('GET', key) == uid then
        redis.call('DEL', key)
    end
    fields[#fields + 1] = 'email'
    fields[#fields + 1] = ''
end
redis.call('HSET', user, unpack(fields))
local email = f[4]
if ARGV[5] == '1' then
    email = ''
end
ix_user(uid, {tag = f[3], email = f[4], username = f[8]},
        {tag = f[3], email = email, username = f[8]})
redis.call('ZREM', KEYS[2], uid)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', '100000', '*', 'uid', uid, 'k', ARGV[2], 'op', 'update')
if not was or f[5] == '1' then
    return {'ok', was and 1 or 0, 0}
end
return {'ok', 1, user_event(KEYS[4], KEYS[5], KEYS[6], KEYS[7], {
    type = 'user_disconnected', id = ARGV[7], pid = pid, uid = uid, code = code, tag = ARGV[9],
    sha1 = ARGV[8], payload = ARGV[10], now = now})}
