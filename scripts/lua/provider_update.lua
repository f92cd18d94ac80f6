-- provider_update: changes a provider's settings.
--
-- KEYS[1]  si:provider:<code>
-- ARGV[1..] field, value pairs; an empty value removes the field
-- Returns  'ok', 'missing', or 'in_use' when `auth` would change while
--          connections use the provider (their users' secrets are passwords
--          or refresh tokens by that kind)
--
-- Atomic so that the in-use check and the write cannot be separated by a
-- connection_create.
if redis.call('EXISTS', KEYS[1]) == 0 then
    return 'missing'
end
local count = tonumber(redis.call('HGET', KEYS[1], 'connections_count') or '0')
local auth = redis.call('HGET', KEYS[1], 'auth')
for i = 1, #ARGV, 2 do
    if ARGV[i] == 'auth' and ARGV[i + 1] ~= auth and count > 0 then
        return 'in_use'
    end
end
local t = redis.call('TIME')
local now = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
for i = 1, #ARGV, 2 do
    if ARGV[i + 1] == '' then
        redis.call('HDEL', KEYS[1], ARGV[i])
    else
        redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    end
end
redis.call('HSET', KEYS[1], 'updated_at', now)
return 'ok'
