-- lease_release: an incarnation gives a unit up (rebalance, drain, archive):
-- a watcher's user, or a dispatcher's queue shard.
--
-- KEYS[1]  si:{k}:lease:<uid> (user) or si:{k}:owner (queue shard k)
-- ARGV[1]  <node>:<g>, the caller's token
-- Returns  1 released, 0 the lease was not the caller's (left alone)
--
-- Atomic so that a release never deletes a lease another incarnation took
-- over in the meantime.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
    return 1
end
return 0
