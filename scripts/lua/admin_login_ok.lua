-- admin_login_ok: begins a session for an account whose password the api
-- just verified (cmd/api/admin_session.c).
--
-- KEYS[1]  si:admin:<lower>
-- KEYS[2]  si:admin_fail:<lower>
-- KEYS[3]  si:asess:<h> (h: SHA-256 hex of the new cookie)
-- KEYS[4]  si:admin:<lower>:sessions
-- ARGV[1]  lower username
-- ARGV[2]  CSRF token of the session
-- ARGV[3]  now, ms
-- ARGV[4]  idle expiry, ms
-- ARGV[5]  absolute expiry, ms
-- ARGV[6]  client address
-- ARGV[7]  h
-- ARGV[8]  the password hash the api verified against
-- Returns  {'ok'}, {'missing'}, {'disabled'}, {'changed'} (the password
--          changed meanwhile) or {'locked', until ms}
--
-- Atomic so that an account disabled, deleted or locked after the api read
-- it gets no session: admin_change ends the sessions it finds, and none can
-- begin after it ran.
local now = tonumber(ARGV[3])
local a = redis.call('HMGET', KEYS[1], 'hash', 'disabled')
if not a[1] then
    return {'missing'}
end
if a[1] ~= ARGV[8] then
    return {'changed'}
end
local locked = tonumber(redis.call('HGET', KEYS[2], 'locked_until') or '0')
if locked > now then
    return {'locked', tostring(locked)}
end
if a[2] == '1' then
    return {'disabled'}
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'last_login_at', ARGV[3])
redis.call('HSET', KEYS[3], 'username', ARGV[1], 'csrf', ARGV[2], 'created_at', ARGV[3],
           'last_seen_at', ARGV[3], 'addr', ARGV[6])
redis.call('PEXPIRE', KEYS[3], math.min(tonumber(ARGV[4]), tonumber(ARGV[5])))
-- Sessions past their absolute end are gone from Redis: drop them here.
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[5]), ARGV[7])
return {'ok'}
