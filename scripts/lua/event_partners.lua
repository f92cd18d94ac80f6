-- event_partners: per partner, the waiting events of one shard and the
-- creation time of the oldest (GET /admin/api/queues' "partners").
--
-- KEYS[1]  si:{k}:ready_partners
-- KEYS[2]  si:{k}:retry
-- ARGV[1]  the shard's key prefix "si:{k}:"
-- ARGV[2]  how many retry events to read at most (the earliest due)
-- Returns  {complete, pid, ready, retry, oldest_at, pid, ...}: complete is 1
--          when the whole retry set was read, 0 when it held more than
--          ARGV[2] (then retry counts and oldest_at cover the events read)
--
-- Ready events: each ready partner's list length and its oldest event (the
-- RPOP end), O(partners). Retry events are in one set per shard, by due
-- time, so they are read one by one, up to ARGV[2]. Read-only; one script
-- for one consistent snapshot in one round trip.
local prefix = ARGV[1]
local seen, order = {}, {}
local function partner(pid)
    local p = seen[pid]
    if not p then
        p = {ready = 0, retry = 0, oldest = false}
        seen[pid] = p
        order[#order + 1] = pid
    end
    return p
end
local function older(p, created)
    local c = tonumber(created)
    if c and (not p.oldest or c < p.oldest) then
        p.oldest = c
    end
end
for _, pid in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
    local list = prefix .. 'ready:' .. pid
    local p = partner(pid)
    p.ready = redis.call('LLEN', list)
    local eid = redis.call('LINDEX', list, -1)
    if eid then
        older(p, redis.call('HGET', prefix .. 'evt:' .. eid, 'created_at'))
    end
end
local max = tonumber(ARGV[2])
local ids = redis.call('ZRANGE', KEYS[2], 0, max - 1)
for _, eid in ipairs(ids) do
    local v = redis.call('HMGET', prefix .. 'evt:' .. eid, 'pid', 'created_at')
    if v[1] then
        local p = partner(v[1])
        p.retry = p.retry + 1
        older(p, v[2])
    end
end
local out = {(#ids < max or redis.call('ZCARD', KEYS[2]) <= max) and 1 or 0}
for _, pid in ipairs(order) do
    local p = seen[pid]
    out[#out + 1] = pid
    out[#out + 1] = p.ready
    out[#out + 1] = p.retry
    out[#out + 1] = p.oldest and tostring(p.oldest) or ''
end
return out
