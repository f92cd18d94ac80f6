-- admin_session_touch: checks a dashboard session and renews its idle
-- expiry (cmd/api/admin_session.c), on every request that brings its cookie.
--
-- KEYS[1]  si:asess:<h>
-- ARGV[1]  now, ms
-- ARGV[2]  idle expiry, ms (SUPERIMAP_ADMIN_SESSION_IDLE_SEC * 1000)
-- ARGV[3]  absolute expiry, ms (SUPERIMAP_ADMIN_SESSION_MAX_SEC * 1000)
-- Returns  {lower username, csrf, created_at, idle end ms}, or nil when there
--          is no such session or it has ended (then it is deleted)
--
-- The idle end is renewed to now + idle, never past created_at + max. Both
-- ends are checked here by arithmetic as well as by the key's PEXPIRE, so a
-- late expiry in Redis never lets a session live on. Atomic so that a
-- session past its end is never renewed by a request racing its expiry.
local s = redis.call('HMGET', KEYS[1], 'username', 'csrf', 'created_at', 'last_seen_at')
if not s[1] then
    return nil
end
local now = tonumber(ARGV[1])
local idle = tonumber(ARGV[2])
local finish = tonumber(s[3]) + tonumber(ARGV[3])
if now >= finish or now >= tonumber(s[4]) + idle then
    redis.call('DEL', KEYS[1])
    return nil
end
local idle_end = math.min(now + idle, finish)
redis.call('HSET', KEYS[1], 'last_seen_at', ARGV[1])
redis.call('PEXPIRE', KEYS[1], idle_end - now)
return {s[1], s[2], s[3], tostring(idle_end)}
