-- event_ack: records that an event needs no more delivery attempts (its
-- webhook answered 2xx, or 403, 410, or it has no URL), so it leaves the
-- queue.
--
-- KEYS[1]  si:{k}:evt:<eid>
-- KEYS[2]  si:{k}:inflight
-- ARGV[1]  event id
-- ARGV[2]  attempts returned by event_claim (the fencing token)
-- ARGV[3]  ms the finished event is kept (its payload is deleted at once)
-- ARGV[4]  HTTP status of the attempt (0 when no request was made)
-- ARGV[5]  now in ms (the caller's clock: finished_at is informational), or
--          "" for Redis TIME
-- Returns  1 when the claim was current and the event is finished, 0 when
--          the claim was stale (its lease expired and the event went back to
--          ready or to another dispatcher): nothing is changed, and the event
--          will be delivered again (at least once).
--
-- The delivery log entry is written by the caller with a separate XADD, so
-- this script stays inside the shard's Redis Cluster slot.
--
-- Atomic so that the state check and the removal from inflight cannot be
-- split by a requeue of the same event.
local key = KEYS[1]
local v = redis.call('HMGET', key, 'state', 'attempts')
if v[1] ~= 'inflight' or v[2] ~= ARGV[2] then
    return 0
end
local now = ARGV[5]
if now == nil or now == '' then
    local t = redis.call('TIME')
    now = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HSET', key, 'state', 'delivered', 'last_status', ARGV[4], 'last_error', '',
           'finished_at', now, 'next_at', '')
redis.call('HDEL', key, 'payload')
redis.call('PEXPIRE', key, tonumber(ARGV[3]))
return 1
