-- partner_create: a new partner with its API key lookup.
--
-- Also moves the partner's entry in si:ix:partner, the admin search index
-- (ix_partner() of prelude/index.lua, which names it).
--
-- KEYS[1]  si:partner:<pid>  (pid from INCR si:seq:partner, made by the api
--          first because the encrypted fields' AAD names it)
-- KEYS[2]  si:partners
-- KEYS[3]  si:apikey:<sha256 hex of the new API key>
-- KEYS[4]  si:seq:partner, only when pid was not taken from it (superimap-import
--          keeps the original's ids): raised to pid, so later ids never collide
-- ARGV[1]  pid
-- ARGV[2..] field, value pairs (name, encrypted api_key and webhook_secret,
--          webhook URLs, ...)
-- Returns  'ok', 'exists' (the partner) or 'key_taken' (another partner has
--          the key, which a partner may bring)
--
-- Atomic so that a partner never exists without the lookup of its key, nor
-- the lookup without the partner.
if redis.call('EXISTS', KEYS[1]) == 1 then
    return 'exists'
end
if redis.call('EXISTS', KEYS[3]) == 1 then
    return 'key_taken'
end
if KEYS[4] and tonumber(redis.call('GET', KEYS[4]) or '0') < tonumber(ARGV[1]) then
    redis.call('SET', KEYS[4], ARGV[1])
end
local t = redis.call('TIME')
local now = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local fields = {'created_at', now, 'updated_at', now}
local name = ''
for i = 2, #ARGV, 2 do
    fields[#fields + 1] = ARGV[i]
    fields[#fields + 1] = ARGV[i + 1]
    if ARGV[i] == 'name' then
        name = ARGV[i + 1]
    end
end
redis.call('HSET', KEYS[1], unpack(fields))
ix_partner(ARGV[1], nil, name)
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('SET', KEYS[3], ARGV[1])
return 'ok'
