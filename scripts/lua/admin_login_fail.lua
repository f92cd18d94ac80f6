-- admin_login_fail: counts a failed sign-in for a username, known or not,
-- and locks it after too many (cmd/api/admin_session.c).
--
-- KEYS[1]  si:admin_fail:<lower>
-- KEYS[2]  si:admin:<lower> (its last_failure_at is set when it exists)
-- ARGV[1]  now, ms
-- ARGV[2]  failures that lock (SUPERIMAP_ADMIN_LOCKOUT_FAILURES)
-- ARGV[3]  lock, ms (SUPERIMAP_ADMIN_LOCKOUT_SEC * 1000)
-- Returns  {failures counted, locked_until ms or 0}
--
-- Failures count while each comes within the lock time of the one before
-- (the key expires after it); the one that reaches the limit locks the name
-- until now + lock and starts the count again. A failure while locked is not
-- counted: the lock does not grow. Atomic so that parallel guesses cannot
-- each see a count under the limit.
local now = tonumber(ARGV[1])
local lock = tonumber(ARGV[3])
local locked = tonumber(redis.call('HGET', KEYS[1], 'locked_until') or '0')
if locked > now then
    return {0, locked}
end
local count = redis.call('HINCRBY', KEYS[1], 'count', 1)
if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('HSET', KEYS[2], 'last_failure_at', ARGV[1])
end
if count >= tonumber(ARGV[2]) then
    locked = now + lock
    redis.call('HSET', KEYS[1], 'count', '0', 'locked_until', tostring(locked))
    redis.call('PEXPIRE', KEYS[1], lock)
    return {count, locked}
end
redis.call('HSET', KEYS[1], 'locked_until', '0')
redis.call('PEXPIRE', KEYS[1], lock)
return {count, 0}
