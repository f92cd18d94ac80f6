-- lease_acquire: an incarnation takes the right to act for one unit: a
-- watcher's user, or a dispatcher's queue shard.
--
-- KEYS[1]  si:{k}:lease:<uid> (user) or si:{k}:owner (queue shard k)
-- KEYS[2]  si:{k}:alive:<node>:<g>   the caller's own alive key in shard k
-- ARGV[1]  <node>:<g>, the caller's token
-- Returns  1 acquired (the lease was free, already the caller's, or its
--          holder's alive key in this shard is gone: the holder died),
--          0 held by another live incarnation,
--          -1 the caller's own alive key is gone: it must fence itself
--
-- The holder's alive key, si:{k}:alive:<holder token>, is derived from the
-- lease's value and is not in KEYS; it carries the same {k} hash tag, so it
-- lives in the same Redis Cluster slot as every key above.
--
-- Atomic so that two incarnations racing for a user whose holder died cannot
-- both win: the check of the old holder and the write of the new one happen
-- in one step.
if redis.call('EXISTS', KEYS[2]) == 0 then
    return -1
end
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then
    local prefix = string.match(KEYS[2], '^(si:{[^}]*}:alive:)')
    if redis.call('EXISTS', prefix .. cur) == 1 then
        return 0
    end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
