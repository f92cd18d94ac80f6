-- stat_add: adds to one minute's chart counters (core/stat.h).
--
-- KEYS[1]  si:stat:<unix minute>
-- ARGV[1]  the hash's time to live in seconds (48 h)
-- ARGV[2..] field, increment pairs (mail, delivered, failed, lat_<bucket>)
-- Returns  1
--
-- One command where a HINCRBY per field and an EXPIRE would be several, so
-- a delivery attempt or a new mail costs one more command on the connection
-- it already uses, sent without waiting for its reply. Atomic only so the
-- key never lives without its TTL. The key is outside every shard's slot,
-- which is why this is a script of its own, never folded into the shard's
-- hot-path scripts (core/schema.h).
for i = 2, #ARGV - 1, 2 do
    redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
