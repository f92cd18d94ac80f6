-- connection_update: changes a connection's fields (OAuth2 client id and
-- encrypted client secret, mailboxes).
--
-- KEYS[1]  si:conn:<pid>:<code>
-- ARGV[1..] field, value pairs; mailboxes '' deletes the field (the default
--          list again; the api then runs connection_mailboxes.lua)
-- Returns  'ok', or 'missing' when the connection does not exist or is being
--          deleted
--
-- Atomic so that an update never re-creates a connection that a parallel
-- DELETE has just removed (a bare HSET would).
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HGET', KEYS[1], 'deleting') == '1' then
    return 'missing'
end
local t = redis.call('TIME')
local now = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local fields = {'updated_at', now}
for i = 1, #ARGV, 2 do
    if ARGV[i] == 'mailboxes' and ARGV[i + 1] == '' then
        redis.call('HDEL', KEYS[1], 'mailboxes')
    else
        fields[#fields + 1] = ARGV[i]
        fields[#fields + 1] = ARGV[i + 1]
    end
end
redis.call('HSET', KEYS[1], unpack(fields))
return 'ok'
