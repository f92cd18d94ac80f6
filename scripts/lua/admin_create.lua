-- admin_create: makes a dashboard admin account (cmd/api/admin_store.c).
--
-- KEYS[1]  si:admin:<lower>
-- KEYS[2]  si:admins
-- ARGV[1]  username as given
-- ARGV[2]  password hash ($scrypt$..., core/crypto.h)
-- ARGV[3]  now, ms
-- ARGV[4]  lower username
-- Returns  1 (made) or 0 (the name is taken)
--
-- Atomic so that two creations of one name cannot both win, and the index
-- never names an account that is not there.
if redis.call('EXISTS', KEYS[1]) == 1 then
    return 0
end
redis.call('HSET', KEYS[1], 'username', ARGV[1], 'hash', ARGV[2], 'disabled', '0', 'created_at',
           ARGV[3], 'updated_at', ARGV[3], 'last_login_at', '', 'last_failure_at', '')
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
