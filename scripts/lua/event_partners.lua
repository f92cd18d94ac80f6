-- event_partners: one shard's queue for the dashboard (GET /admin/api/queues):
-- its depths, and per partner its waiting events and the creation time of
-- the oldest.
--
-- KEYS[1]  si:{k}:ready_partners
-- KEYS[2]  si:{k}:inflight
-- KEYS[3]  si:{k}:retry
-- KEYS[4]  si:{k}:dead
-- ARGV[1]  the shard's key prefix "si:{k}:"
-- ARGV[2]  now in ms
-- ARGV[3]  how many retry events to read at most (the earliest due)
-- Returns  {ready, inflight, retry, dead, age in ms of the oldest ready event
--          (0 when none), complete, pid, ready, retry, oldest_at, pid, ...}:
--          the depths as event_stats.lua gives them; complete is 1 when the
--          whole retry set was read, 0 when it held more than ARGV[3] (then
--          the partners' retry counts and oldest_at cover the events read);
--          oldest_at is "" when unknown
--
-- Ready events: each ready partner's list length and its oldest event (the
-- RPOP end), O(partners). Retry events are in one set per shard, by due
-- time, so they are read one by one, up to ARGV[3]. Read-only; one script
-- for one consistent snapshot in one round trip (event_stats.lua is the
-- dispatcher's cheaper cut: depths only).
local prefix = ARGV[1]
local now = tonumber(ARGV[2])
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
local function older(p, c)
    if c and (not p.oldest or c < p.oldest) then
        p.oldest = c
    end
end
local ready, oldest_ready = 0, now
for _, pid in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
    local list = prefix .. 'ready:' .. pid
    local p = partner(pid)
    p.ready = redis.call('LLEN', list)
    ready = ready + p.ready
    local eid = redis.call('LINDEX', list, -1)
    if eid then
        local c = tonumber(redis.call('HGET', prefix .. 'evt:' .. eid, 'created_at'))
        older(p, c)
        if c and c < oldest_ready then
            oldest_ready = c
        end
    end
end
local max = tonumber(ARGV[3])
local nretry = redis.call('ZCARD', KEYS[3])
for _, eid in ipairs(redis.call('ZRANGE', KEYS[3], 0, max - 1)) do
    local v = redis.call('HMGET', prefix .. 'evt:' .. eid, 'pid', 'created_at')
    if v[1] then
        local p = partner(v[1])
        p.retry = p.retry + 1
        older(p, tonumber(v[2]))
    end
end
local out = {ready, redis.call('ZCARD', KEYS[2]), nretry, redis.call('ZCARD', KEYS[4]),
             now - oldest_ready, nretry <= max and 1 or 0}
for _, pid in ipairs(order) do
    local p = seen[pid]
    out[#out + 1] = pid
    out[#out + 1] = p.ready
    out[#out + 1] = p.retry
    out[#out + 1] = p.oldest and tostring(p.oldest) or ''
end
return out
