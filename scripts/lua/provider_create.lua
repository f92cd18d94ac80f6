-- provider_create: a new IMAP provider (the original seeded them; here the
-- admin API makes them).
--
-- KEYS[1]  si:provider:<code>
-- KEYS[2]  si:providers
-- ARGV[1]  code
-- ARGV[2..] field, value pairs
-- Returns  'ok' or 'exists'
--
-- Atomic so that the provider and its entry in the set appear together.
if redis.call('EXISTS', KEYS[1]) == 1 then
    return 'exists'
end
local t = redis.call('TIME')
local now = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local fields = {'code', ARGV[1], 'connections_count', '0', 'created_at', now, 'updated_at', now}
for i = 2, #ARGV, 2 do
    fields[#fields + 1] = ARGV[i]
    fields[#fields + 1] = ARGV[i + 1]
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('SADD', KEYS[2], ARGV[1])
return 'ok'
