-- requeue_expired: returns events whose lease has expired to their partner's
-- ready list (their dispatcher died, froze or lost Redis mid-delivery). Run on
-- start, when a dispatcher takes a shard over, and every few seconds.
--
-- KEYS[1]  si:{k}:inflight
-- KEYS[2]  si:{k}:ready_partners
-- ARGV[1]  the shard's key prefix "si:{k}:"
-- ARGV[2]  now in ms, or "" for Redis TIME
-- ARGV[3]  most events to requeue in this call
-- Returns  {requeued, ms until the next lease expires (-1: none in flight)}
--
-- An expired event goes to the out end of its ready list (RPUSH; the list is
-- LPUSH in, RPOP out), so it is the next one claimed: it was first in line.
-- Ready lists and event hashes are made from ARGV[1] with the same {k} tag
-- (one Redis Cluster slot), as the partners are only known from the events.
--
-- Atomic so that an event is never in flight and ready at once (a late
-- result of the old lease is then refused by its fencing token), and so the
-- round-robin invariant of event_enqueue holds.
local inflight, rp, prefix = KEYS[1], KEYS[2], ARGV[1]
local now = now_ms(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', inflight, '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local n, joined = 0, false
for _, eid in ipairs(ids) do
    redis.call('ZREM', inflight, eid)
    local key = prefix .. 'evt:' .. eid
    local pid = redis.call('HGET', key, 'pid')
    if pid then
        redis.call('HSET', key, 'state', 'ready')
        if ready_push(prefix .. 'ready:' .. pid, rp, pid, eid, true) then
            joined = true
        end
        n = n + 1
    end
end
if joined then
    wake(rp)
end
local next = redis.call('ZRANGE', inflight, 0, 0, 'WITHSCORES')
if #next == 0 then
    return {n, -1}
end
return {n, math.max(0, tonumber(next[2]) - now)}
