-- connection_create: a partner's connection to an IMAP provider (at most one
-- per provider, as the original's validation).
--
-- KEYS[1]  si:provider:<code>
-- KEYS[2]  si:conn:<pid>:<code>
-- KEYS[3]  si:partner:<pid>:conns
-- KEYS[4]  si:partner:<pid>
-- ARGV[1]  code
-- ARGV[2..] field, value pairs (oauth2_client_id, oauth2_client_secret encrypted,
--          mailboxes: canonical JSON, proto/mailboxes.h)
-- Returns  'ok', 'no_provider', 'no_partner' or 'exists'
--
-- Atomic so that two parallel creates make one connection, and the
-- provider's connections_count (which keeps a provider in use from being
-- deleted) always equals the connections that name it.
if redis.call('EXISTS', KEYS[1]) == 0 then
    return 'no_provider'
end
if redis.call('EXISTS', KEYS[4]) == 0 then
    return 'no_partner'
end
if redis.call('EXISTS', KEYS[2]) == 1 then
    return 'exists'
end
local t = redis.call('TIME')
local now = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local fields = {'users_count', '0', 'created_at', now, 'updated_at', now}
for i = 2, #ARGV, 2 do
    fields[#fields + 1] = ARGV[i]
    fields[#fields + 1] = ARGV[i + 1]
end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'connections_count', 1)
return 'ok'
