-- partner_update: changes a partner's settings (name, webhook and redirect
-- URLs, retry policy).
--
-- Also moves the partner's entry in si:ix:partner, the admin search index
-- (ix_partner() of prelude/index.lua, which names it).
--
-- KEYS[1]  si:partner:<pid>
-- ARGV[1..] field, value pairs; an empty value removes the field
-- Returns  'ok' or 'missing'
--
-- Atomic so that an update never re-creates a partner that a parallel
-- DELETE has removed.
if redis.call('EXISTS', KEYS[1]) == 0 then
    return 'missing'
end
local t = redis.call('TIME')
local now = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
for i = 1, #ARGV, 2 do
    if ARGV[i] == 'name' then
        local pid = string.match(KEYS[1], '^si:partner:(.*)$')
        ix_partner(pid, redis.call('HGET', KEYS[1], 'name') or '', ARGV[i + 1])
    end
    if ARGV[i + 1] == '' then
        redis.call('HDEL', KEYS[1], ARGV[i])
    else
        redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    end
end
redis.call('HSET', KEYS[1], 'updated_at', now)
return 'ok'
