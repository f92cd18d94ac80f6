-- user_mget: reads the same fields of many user hashes in one round trip
-- (a page of a connection's user list); the dashboard reads other hashes
-- with it too (si:stat:<minute>, si:circuit:<sha>).
--
-- KEYS[1..n]  si:{k}:user:<uid> (or any hashes)
-- ARGV[1..m]  field names
-- Returns     one array of m values per key (false for a missing field)
--
-- Read-only; a script only so that one call can name keys of many shards.
local out = {}
for i = 1, #KEYS do
    out[i] = redis.call('HMGET', KEYS[i], unpack(ARGV))
end
return out
