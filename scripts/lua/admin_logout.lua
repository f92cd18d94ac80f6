-- admin_logout: ends one dashboard session (cmd/api/admin_session.c).
--
-- KEYS[1]  si:asess:<h>
-- KEYS[2]  si:admin:<lower>:sessions
-- ARGV[1]  h
-- Returns  1 when the session was there, else 0
--
-- Atomic so that the account's list of sessions never names one that is
-- gone while it still works.
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
