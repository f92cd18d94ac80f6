-- rekey_swap: puts secrets re-encrypted under the current key in place of
-- the envelopes they were made from (superimap-api rekey, cmd/api/rekey.c).
--
-- KEYS[1]  a hash holding encrypted fields (a partner, a connection, a user
--          or an event)
-- ARGV     triples: field, the envelope rekey read, the new envelope
-- Returns  how many fields were replaced
--
-- Compare and set, per field, in one step for the hash: a field written
-- since rekey read it (a partner rotating its key, a watcher refreshing an
-- access token, a user's new password: all written under the current key)
-- keeps the newer value; rekey's copy of the old one is dropped.
local n = 0
for i = 1, #ARGV - 2, 3 do
    if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
        redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
        n = n + 1
    end
end
return n
