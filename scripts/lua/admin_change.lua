-- admin_change: disables, enables or deletes an admin account, ending the
-- sessions given (cmd/api/admin_store.c).
--
-- KEYS[1]  si:admin:<lower>
-- KEYS[2]  si:admins
-- KEYS[3]  si:admin:<lower>:sessions
-- KEYS[4..] si:asess:<h> of sessions to end (disable, delete), as the api
--          read them from KEYS[3]
-- ARGV[1]  disable | enable | delete
-- ARGV[2]  now, ms
-- ARGV[3]  lower username
-- ARGV[4..] the <h> of KEYS[4..], in the same order
-- Returns  {existed 0|1, sessions still in KEYS[3]}
--
-- Atomic so that once it has run no new session can begin (admin_login_ok
-- refuses a disabled or missing account); a session that began between the
-- api's read of KEYS[3] and this script is still listed there, and the api
-- calls again until none is left.
local existed = redis.call('EXISTS', KEYS[1])
local op = ARGV[1]
if existed == 1 then
    if op == 'delete' then
        redis.call('DEL', KEYS[1])
        redis.call('ZREM', KEYS[2], ARGV[3])
    else
        redis.call('HSET', KEYS[1], 'disabled', op == 'disable' and '1' or '0', 'updated_at',
                   ARGV[2])
    end
end
if op ~= 'enable' then
    for i = 4, #KEYS do
        redis.call('DEL', KEYS[i])
        redis.call('ZREM', KEYS[3], ARGV[i])
    end
end
return {existed, redis.call('ZCARD', KEYS[3])}
