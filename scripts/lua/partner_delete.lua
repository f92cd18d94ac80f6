-- partner_delete: removes a partner whose connections are already deleted
-- (the api deletes them first, each with connection_delete), with its key
-- lookups, delivery log and queued events.
--
-- Also moves the partner's entry in si:ix:partner, the admin search index
-- (ix_partner() of prelude/index.lua, which names it).
--
-- KEYS[1]  si:partner:<pid>
-- KEYS[2]  si:partners
-- KEYS[3]  si:partner:<pid>:conns
-- KEYS[4]  si:log:<pid>
-- KEYS[5]  si:apikey:<sha256 of the current key>
-- KEYS[6]  si:apikey:<sha256 of the previous key> (may equal KEYS[5])
-- then for each shard k = 0 .. S-1, 2 keys: si:{k}:ready:<pid>, si:{k}:ready_partners
-- ARGV[1]  pid
-- Returns  {'missing'}, {'has_connections'}, or {'ok', k, event id, k, event id, ...}
--          with the events that were still queued, whose hashes the api deletes
--
-- Atomic so that the partner's key stops working at the moment its data goes.
if redis.call('EXISTS', KEYS[1]) == 0 then
    return {'missing'}
end
if redis.call('SCARD', KEYS[3]) > 0 then
    return {'has_connections'}
end
local pid = ARGV[1]
ix_partner(pid, redis.call('HGET', KEYS[1], 'name') or '', nil)
local out = {'ok'}
local shard = 0
for i = 7, #KEYS, 2 do
    for _, id in ipairs(redis.call('LRANGE', KEYS[i], 0, -1)) do
        out[#out + 1] = tostring(shard)
        out[#out + 1] = id
    end
    redis.call('DEL', KEYS[i])
    redis.call('LREM', KEYS[i + 1], 0, pid)
    shard = shard + 1
end
redis.call('DEL', KEYS[1], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
redis.call('ZREM', KEYS[2], pid)
return out
