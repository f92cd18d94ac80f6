-- partner_rotate: replaces a partner's API key or webhook secret, keeping
-- the previous one valid for a grace period (the dispatcher signs with both
-- secrets meanwhile; the api accepts both keys).
--
-- KEYS[1]  si:partner:<pid>
-- for the API key also:
-- KEYS[2]  si:apikey:<sha256 of the new key>
-- KEYS[3]  si:apikey:<sha256 of the current key> (becomes the previous one)
-- KEYS[4]  si:apikey:<sha256 of the previous key> (dropped now; may equal KEYS[3])
-- ARGV[1]  pid
-- ARGV[2]  field: api_key | webhook_secret
-- ARGV[3]  the current encrypted value the api read (to detect a parallel rotation)
-- ARGV[4]  the new value, encrypted (AAD si:partner:<pid>:<field>)
-- ARGV[5]  the current value encrypted again for <field>_old
--          (AAD si:partner:<pid>:<field>_old)
-- ARGV[6]  grace in ms; <field>_old_until = now + grace
-- Returns  {'ok', until ms}, {'missing'}, {'retry'} or {'taken'} (the new API
--          key is another partner's: a key a partner brought)
--
-- Atomic so that at every moment exactly the new and the previous key work,
-- and two parallel rotations cannot both keep their key.
if redis.call('EXISTS', KEYS[1]) == 0 then
    return {'missing'}
end
local field = ARGV[2]
if redis.call('HGET', KEYS[1], field) ~= ARGV[3] then
    return {'retry'}
end
if field == 'api_key' then
    local owner = redis.call('GET', KEYS[2])
    if owner and owner ~= ARGV[1] then
        return {'taken'}
    end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local grace = tonumber(ARGV[6])
local untilms = tostring(now + grace)
redis.call('HSET', KEYS[1], field, ARGV[4], field .. '_old', ARGV[5], field .. '_old_until',
           untilms, 'updated_at', tostring(now))
if field == 'api_key' then
    if KEYS[4] ~= KEYS[3] then
        redis.call('DEL', KEYS[4])
    end
    redis.call('SET', KEYS[2], ARGV[1])
    if grace > 0 then
        redis.call('PEXPIRE', KEYS[3], grace)
    else
        redis.call('DEL', KEYS[3])
    end
end
return {'ok', untilms}
