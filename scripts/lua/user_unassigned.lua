-- user_unassigned: marks a user the watcher cannot take (over capacity), so
-- the state is visible through the API instead of the user being silently
-- unwatched.
--
-- KEYS[1]  si:{k}:lease:<uid>
-- KEYS[2]  si:{k}:user:<uid>
-- ARGV[1]  state to write (unassigned)
-- Returns  1 written, 0 a live incarnation holds the lease (it reports the
--          state itself), -1 no such user
--
-- The holder's alive key, si:{k}:alive:<holder token>, is derived from the
-- lease's value with the same {k} hash tag, as in lease_acquire.lua.
-- Atomic so that the check of the holder and the write cannot interleave with
-- that holder's own user_state.
local cur = redis.call('GET', KEYS[1])
if cur then
    local prefix = string.match(KEYS[1], '^(si:{[^}]*}:)')
    if redis.call('EXISTS', prefix .. 'alive:' .. cur) == 1 then
        return 0
    end
end
if redis.call('EXISTS', KEYS[2]) == 0 then
    return -1
end
redis.call('HSET', KEYS[2], 'state', ARGV[1])
return 1
