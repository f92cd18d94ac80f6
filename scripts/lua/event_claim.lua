-- event_claim: takes up to N ready events of one shard for delivery, round
-- robin over the partners that have ready events, and leases them.
--
-- KEYS[1]  si:{k}:ready_partners
-- KEYS[2]  si:{k}:inflight
-- ARGV[1]  the shard's key prefix, "si:{k}:"
-- ARGV[2]  now in ms, or "" for Redis TIME (tests pass a clock)
-- ARGV[3]  lease in ms: the event returns to ready if no result arrives by then
-- ARGV[4]  most events to claim
-- ARGV[5]  free delivery slots of each partner not listed below
-- ARGV[6]  largest payload returned inline, in bytes
-- ARGV[7..] pid, free slots pairs (the caller's per-partner concurrency left)
-- Returns  {more, {skipped pids}, event, event, ...}: more is 1 when the shard
--          still has ready events of partners with free slots (the batch
--          was full: claim again); skipped are partners that had ready events
--          but no free slot (claim again once one of them frees a slot); each event is {id, pid, type, uid, code, tag,
--          sha1, payload, attempts, created_at, payload length}, where
--          attempts counts this claim and is the fencing token of event_ack,
--          event_retry and event_dead. A payload longer than ARGV[6] is
--          returned as "" (the caller HGETs it): every string a script
--          touches is hashed byte by byte by Redis' Lua, which made 100 KiB
--          payloads cost Redis more than everything else. An event whose hash
--          is missing is returned with empty fields (the caller dead-letters
--          it).
--
-- One pass takes one event per partner, then starts again, so a partner with
-- a thousand ready events gets no more turns than one with a single event.
--
-- Keys: si:{k}:ready:<pid> and si:{k}:evt:<eid> are made from ARGV[1], as
-- the partners with ready events are only known once ready_partners is read.
-- They carry the same {k} hash tag as KEYS, so the script still touches one
-- Redis Cluster slot.
--
-- Atomic so that two dispatchers never claim one event, an event is never
-- both ready and in flight, and a partner is in ready_partners exactly when
-- its ready list is non-empty.
local rp, inflight, prefix = KEYS[1], KEYS[2], ARGV[1]
local now
if ARGV[2] ~= '' then
    now = tonumber(ARGV[2])
else
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local deadline = now + tonumber(ARGV[3])
local max = tonumber(ARGV[4])
local default_free = tonumber(ARGV[5])
local inline_max = tonumber(ARGV[6])
local free = {}
for i = 7, #ARGV, 2 do
    free[ARGV[i]] = tonumber(ARGV[i + 1])
end
local out = {0, {}}
local skipped, seen = out[2], {}
local claimed, misses = 0, 0
local n = redis.call('LLEN', rp) -- kept up to date below: one call fewer per event
while claimed < max and n > 0 and misses < n do
    local pid = redis.call('LPOP', rp)
    n = n - 1
    local f = free[pid] or default_free
    if f <= 0 then
        redis.call('RPUSH', rp, pid)
        n = n + 1
        misses = misses + 1
        if not seen[pid] then
            seen[pid] = true
            skipped[#skipped + 1] = pid
        end
    else
        local list = prefix .. 'ready:' .. pid
        local eid = redis.call('RPOP', list)
        if eid then
            if redis.call('LLEN', list) > 0 then
                redis.call('RPUSH', rp, pid)
                n = n + 1
            end
            local key = prefix .. 'evt:' .. eid
            local plen = redis.call('HSTRLEN', key, 'payload')
            local v
            if plen <= inline_max then
                v = redis.call('HMGET', key, 'type', 'uid', 'code', 'tag', 'sha1', 'state',
                               'attempts', 'created_at', 'payload')
            else
                v = redis.call('HMGET', key, 'type', 'uid', 'code', 'tag', 'sha1', 'state',
                               'attempts', 'created_at')
            end
            if v[6] ~= 'delivered' and v[6] ~= 'dead' and v[6] ~= 'inflight' then
                local attempts = (tonumber(v[7]) or 0) + 1
                if v[6] then
                    redis.call('HSET', key, 'attempts', attempts, 'state', 'inflight')
                else -- no hash: give it an id and pid so it can be dead-lettered
                    redis.call('HSET', key, 'id', eid, 'pid', pid, 'attempts', attempts, 'state',
                               'inflight')
                end
                redis.call('ZADD', inflight, deadline, eid)
                out[#out + 1] = {eid, pid, v[1] or '', v[2] or '', v[3] or '', v[4] or '',
                                 v[5] or '', v[9] or '', tostring(attempts), v[8] or '', plen}
                claimed = claimed + 1
                free[pid] = f - 1
                misses = 0
            end
            -- else: a stale id (the event is already finished or leased);
            -- dropping it from the list loses nothing.
        end
        -- else: an empty list; the partner leaves the round robin.
    end
end
if n > 0 and misses < n then
    out[1] = 1
end
return out
