-- ix_prune: drops the entries of one batch of a search index whose record
-- is gone or holds another value now (written by a version without the
-- indexes after they existed); superimap-api reindex, cmd/api/reindex.c,
-- after its backfill.
--
-- KEYS[1]  the index: si:ix:user or si:ix:partner
-- KEYS[2..n+1]  the record of each entry: si:{k}:user:<uid>, si:partner:<pid>
-- ARGV[1..n]    the entries ("<e|t|l><lower value>\x1f<uid>", "<lower
--               name>\x1f<pid>"), in the order of their records
-- Returns  how many entries were dropped
--
-- Atomic per batch so that an entry is judged against its record as it is
-- at that moment: the user and partner scripts move entries with their
-- records, so a live entry is never dropped.
local fields = {e = 'email', t = 'tag', l = 'username'}
local is_user = KEYS[1] == 'si:ix:user'
local dropped = 0
for i, member in ipairs(ARGV) do
    local value = string.match(member, '^(.*)\31[^\31]*$') or ''
    local field = 'name'
    if is_user then
        field = fields[string.sub(value, 1, 1)]
        value = string.sub(value, 2)
    end
    local now = field and redis.call('HGET', KEYS[i + 1], field)
    if not now or string.lower(now) ~= value then
        redis.call('ZREM', KEYS[1], member)
        dropped = dropped + 1
    end
end
return dropped
