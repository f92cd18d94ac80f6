-- promote_due: moves retries whose time has come back to their partner's
-- ready list, in batches, and drops dead letters older than their keep time.
--
-- KEYS[1]  si:{k}:retry
-- KEYS[2]  si:{k}:ready_partners
-- KEYS[3]  si:{k}:dead
-- ARGV[1]  the shard's key prefix "si:{k}:"
-- ARGV[2]  now in ms, or "" for Redis TIME
-- ARGV[3]  most events to promote in this call
-- ARGV[4]  ms a dead letter is kept (older ones are deleted, 100 per call)
-- Returns  {promoted, ms until the next retry is due (-1: none; 0: more are
--          due now than this batch took)}
--
-- A promoted event goes to the out end of its ready list (RPUSH): it has
-- waited longest. Ready lists and event hashes are made from ARGV[1] with the
-- same {k} tag (one Redis Cluster slot).
--
-- Atomic so that an event is never both in retry and ready, and the
-- round-robin invariant of event_enqueue holds.
local retry, rp, prefix = KEYS[1], KEYS[2], ARGV[1]
local now = now_ms(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', retry, '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local n, joined = 0, false
for _, eid in ipairs(ids) do
    redis.call('ZREM', retry, eid)
    local key = prefix .. 'evt:' .. eid
    local pid = redis.call('HGET', key, 'pid')
    if pid then
        redis.call('HSET', key, 'state', 'ready', 'next_at', '')
        if ready_push(prefix .. 'ready:' .. pid, rp, pid, eid, true) then
            joined = true
        end
        n = n + 1
    end
end
local old = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[4]), 'LIMIT', 0, 100)
for _, id in ipairs(old) do
    redis.call('ZREM', KEYS[3], id)
    redis.call('DEL', prefix .. 'evt:' .. id)
end
if joined then
    wake(rp)
end
local next = redis.call('ZRANGE', retry, 0, 0, 'WITHSCORES')
if #next == 0 then
    return {n, -1}
end
return {n, math.max(0, tonumber(next[2]) - now)}
