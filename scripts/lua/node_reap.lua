-- node_reap: a peer whose Redis connection is gone has died (core/reaper):
-- its generation's alive keys go, so its leases are free at once, and it
-- leaves the fleet, so every node places its units elsewhere.
--
-- KEYS[1]  the role's zset: si:watchers or si:dispatchers
-- KEYS[2]  si:node:<peer>
-- KEYS[3]  si:<role>:epoch
-- KEYS[4]  si:{0}:alive:<caller token>, the caller's own alive key
-- ARGV[1]  the peer's node id
-- ARGV[2]  the peer's token, <node>:<g>, as its connection's name said
-- ARGV[3]  shards (alive keys per generation)
-- Returns  the number of the peer's alive keys deleted, 0 when there were
--          none (it left cleanly, or fenced itself, or Redis lost them: then
--          nothing is changed, the peer may still be beating), or -1 when the
--          caller's own alive key is gone (it must not act: it is fenced, or
--          about to be)
--
-- Not Redis Cluster safe (the alive keys span every slot): the control plane
-- (docs/capacity.md). Atomic so that the fleet never sees the peer gone from
-- the zset with its alive keys still there, or the reverse.
if redis.call('EXISTS', KEYS[4]) == 0 then
    return -1
end
local deleted = 0
for k = 0, tonumber(ARGV[3]) - 1 do
    deleted = deleted + redis.call('DEL', 'si:{' .. k .. '}:alive:' .. ARGV[2])
end
if deleted == 0 then
    return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
redis.call('INCR', KEYS[3])
return deleted
