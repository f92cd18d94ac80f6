-- prelude/index: local functions that scripts/embed-lua.sh puts before each
-- script that keeps the admin dashboard's search indexes (this file is not a
-- script of its own). The indexes are global lexicographic zsets, outside
-- any shard, like si:tag: and si:email: (management scripts assume the one
-- Redis server, docs/architecture.md section 2), so their names are written
-- here once instead of travelling in KEYS:
--
--   si:ix:user     "<e|t|l><lower value>\x1f<uid>" -> 0 for every user,
--                  archived too: e its email, t its tag, l its login
--                  username; no entry for an empty value
--   si:ix:partner  "<lower name>\x1f<pid>" -> 0 for every partner
--
-- Lower case is string.lower, ASCII only, as the api lowers what it searches.

-- Moves user uid's entries from the values of before to those of after
-- (tables with tag, email and username; nil for a user created or deleted).
-- The entries of after are added even when unchanged, so a user written by
-- a version without the index enters it at its first change.
local function ix_user(uid, before, after)
    local kinds = {{'t', 'tag'}, {'e', 'email'}, {'l', 'username'}}
    for _, kind in ipairs(kinds) do
        local old = before and string.lower(before[kind[2]] or '') or ''
        local new = after and string.lower(after[kind[2]] or '') or ''
        if old ~= '' and old ~= new then
            redis.call('ZREM', 'si:ix:user', kind[1] .. old .. '\31' .. uid)
        end
        if new ~= '' then
            redis.call('ZADD', 'si:ix:user', 0, kind[1] .. new .. '\31' .. uid)
        end
    end
end

-- Moves partner pid's entry from name old to name new (nil: the partner is
-- created, or deleted).
local function ix_partner(pid, old, new)
    if old ~= nil and (new == nil or string.lower(old) ~= string.lower(new)) then
        redis.call('ZREM', 'si:ix:partner', string.lower(old) .. '\31' .. pid)
    end
    if new ~= nil then
        redis.call('ZADD', 'si:ix:partner', 0, string.lower(new) .. '\31' .. pid)
    end
end
