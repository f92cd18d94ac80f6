-- event_dead: moves a leased event to the shard's dead letters (retries
-- exhausted, URL disabled, payload unreadable). Its payload is kept, so
-- event_replay can send it again with the same id.
--
-- KEYS[1]  si:{k}:evt:<eid>
-- KEYS[2]  si:{k}:inflight
-- KEYS[3]  si:{k}:dead
-- ARGV[1]  event id
-- ARGV[2]  attempts returned by event_claim (the fencing token)
-- ARGV[3]  HTTP status of the last attempt (0: none)
-- ARGV[4]  error text (why it died)
-- ARGV[5]  most dead letters kept in the shard (oldest dropped first)
-- ARGV[6]  ms a dead letter is kept
-- ARGV[7]  the shard's key prefix "si:{k}:" (hashes of dropped letters)
-- ARGV[8]  now in ms, or "" for Redis TIME
-- Returns  1 when moved, 0 when the claim was stale (nothing changed)
--
-- Dropped letters' hashes are made from ARGV[7]; they share the {k} hash
-- tag, so the script stays in one Redis Cluster slot. At most 100 letters are
-- dropped per call (promote_due trims by age too).
--
-- Atomic so that the event is never both in flight and dead, or in neither.
local key = KEYS[1]
local v = redis.call('HMGET', key, 'state', 'attempts')
if v[1] ~= 'inflight' or v[2] ~= ARGV[2] then
    return 0
end
local now
if ARGV[8] ~= '' then
    now = tonumber(ARGV[8])
else
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('HSET', key, 'state', 'dead', 'last_status', ARGV[3], 'last_error', ARGV[4],
           'finished_at', tostring(now), 'next_at', '')
local function drop(ids)
    for _, id in ipairs(ids) do
        redis.call('ZREM', KEYS[3], id)
        redis.call('DEL', ARGV[7] .. 'evt:' .. id)
    end
end
drop(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[6]), 'LIMIT', 0, 100))
local over = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[5])
if over > 0 then
    drop(redis.call('ZRANGE', KEYS[3], 0, math.min(over, 100) - 1))
end
return 1
