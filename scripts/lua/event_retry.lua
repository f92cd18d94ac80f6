-- event_retry: schedules another delivery attempt of a leased event.
--
-- KEYS[1]  si:{k}:evt:<eid>
-- KEYS[2]  si:{k}:inflight
-- KEYS[3]  si:{k}:retry
-- ARGV[1]  event id
-- ARGV[2]  attempts returned by event_claim (the fencing token)
-- ARGV[3]  delay in ms before the event is due again
-- ARGV[4]  HTTP status of the attempt (0: no response)
-- ARGV[5]  error text of the attempt
-- ARGV[6]  1 when the attempt was made; 0 when the event was never sent (the
--          dispatcher is stopping): the attempt is given back
-- ARGV[7]  now in ms, or "" for Redis TIME
-- Returns  the due time in ms when scheduled, 0 when the claim was stale
--          (nothing changed)
--
-- Atomic so that the event moves from inflight to retry in one step: a crash
-- in between would otherwise lose it (in neither set) or deliver it twice.
local key = KEYS[1]
local v = redis.call('HMGET', key, 'state', 'attempts')
if v[1] ~= 'inflight' or v[2] ~= ARGV[2] then
    return 0
end
local now
if ARGV[7] ~= '' then
    now = tonumber(ARGV[7])
else
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local due = now + tonumber(ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], due, ARGV[1])
if ARGV[6] == '1' then
    redis.call('HSET', key, 'state', 'retry', 'last_status', ARGV[4], 'last_error', ARGV[5],
               'next_at', tostring(due))
else
    redis.call('HSET', key, 'state', 'retry', 'attempts', tonumber(ARGV[2]) - 1, 'next_at',
               tostring(due))
end
return due
