-- ix_backfill: enters the hashes of one SCAN batch in the admin dashboard's
-- search indexes (prelude/index.lua), for a Redis written by a version
-- without them (superimap-api reindex, cmd/api/reindex.c).
--
-- KEYS     hashes of the batch: users (si:{k}:user:<uid>) and partners
--          (si:partner:<pid>) are indexed, any other key is skipped
-- Returns  {users indexed, partners indexed}
--
-- Atomic per batch so that each hash is indexed with the values it holds at
-- that moment: a later change moves its entries through the user and
-- partner scripts, which keep the indexes from then on.
local users, partners = 0, 0
for _, key in ipairs(KEYS) do
    local uid = string.match(key, '^si:{%d+}:user:(%x+)$')
    local pid = string.match(key, '^si:partner:(%d+)$')
    if uid then
        local f = redis.call('HMGET', key, 'tag', 'email', 'username')
        if f[1] then
            ix_user(uid, nil, {tag = f[1], email = f[2], username = f[3]})
            users = users + 1
        end
    elseif pid and redis.call('EXISTS', key) == 1 then
        ix_partner(pid, nil, redis.call('HGET', key, 'name') or '')
        partners = partners + 1
    end
end
return {users, partners}
