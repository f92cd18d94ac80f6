-- event_stats: the queue depths of one shard, for the dispatcher's metrics
-- (the dashboard reads them, with more, from event_partners.lua).
--
-- KEYS[1]  si:{k}:ready_partners
-- KEYS[2]  si:{k}:inflight
-- KEYS[3]  si:{k}:retry
-- KEYS[4]  si:{k}:dead
-- ARGV[1]  the shard's key prefix "si:{k}:"
-- ARGV[2]  now in ms, or "" for Redis TIME
-- Returns  {ready, inflight, retry, dead, age in ms of the oldest ready event
--          (0 when none)}
--
-- Reads each ready partner's list length and its oldest event (the RPOP end),
-- made from ARGV[1] with the same {k} tag: O(partners with ready events).
-- One script so that the five numbers are one consistent snapshot.
local prefix = ARGV[1]
local now
if ARGV[2] ~= '' then
    now = tonumber(ARGV[2])
else
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local ready, oldest = 0, now
for _, pid in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
    local list = prefix .. 'ready:' .. pid
    ready = ready + redis.call('LLEN', list)
    local eid = redis.call('LINDEX', list, -1)
    if eid then
        local c = tonumber(redis.call('HGET', prefix .. 'evt:' .. eid, 'created_at'))
        if c and c < oldest then
            oldest = c
        end
    end
end
return {ready, redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3]),
        redis.call('ZCARD', KEYS[4]), now - oldest}
