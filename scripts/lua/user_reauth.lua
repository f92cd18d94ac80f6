-- user_reauth: the provider refused a user's refresh token (invalid_grant:
-- revoked, expired, password changed). The user stops being watched, shows
-- state reauth_required, and the partner gets a user_reauth_required event,
-- all at once.
--
-- KEYS[1]  si:{k}:user:<uid>
-- KEYS[2]  si:{k}:users
-- KEYS[3]  si:{k}:evt:<eid>
-- KEYS[4]  si:{k}:ready:<pid>
-- KEYS[5]  si:{k}:ready_partners
-- KEYS[6]  si:{k}:reauth (the users reauth_required, counted by users_count)
-- ARGV[1]  the sealed secret (refresh token) the provider refused
-- ARGV[2]  reason (last_error and the event's "reason")
-- ARGV[3]  event id <uid>.reauth.<ms>      ARGV[4]  partner id
-- ARGV[5]  uid     ARGV[6] sha1 (hex SHA-1 of the tag)
-- ARGV[7]  sealed payload (AAD si:evt:<eid>)
-- Returns  1 done, 0 nothing to do: the secret changed meanwhile (the user
--          connected again), the user is gone, or it is reauth_required
--          already (no second event)
--
-- The user leaves its shard's users zset (watchers drop its session at their
-- next resync); connecting again (the api's connect callback) puts it back.
-- It queues with enqueue() of prelude/queue.lua, as event_enqueue does.
local u = redis.call('HMGET', KEYS[1], 'secret', 'state', 'code', 'tag')
if u[1] ~= ARGV[1] or u[2] == 'reauth_required' then
    return 0
end
local now = now_ms()
redis.call('HSET', KEYS[1], 'state', 'reauth_required', 'last_error', ARGV[2], 'connected_at', '',
           'oauth2_access_token', '', 'oauth2_expires_at', '', 'updated_at', tostring(now))
redis.call('ZREM', KEYS[2], ARGV[5])
redis.call('SADD', KEYS[6], ARGV[5])
if redis.call('EXISTS', KEYS[3]) == 0 then
    redis.call('HSET', KEYS[3], 'id', ARGV[3], 'pid', ARGV[4], 'type', 'user_reauth_required',
               'uid', ARGV[5], 'code', u[3] or '', 'tag', u[4] or '', 'sha1', ARGV[6],
               'payload', ARGV[7], 'attempts', '0', 'state', 'ready', 'created_at',
               tostring(now))
    enqueue(KEYS[4], KEYS[5], ARGV[4], ARGV[3])
end
return 1
