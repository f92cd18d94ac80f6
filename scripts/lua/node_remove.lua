-- node_remove: a node leaves the fleet on a clean stop.
--
-- KEYS[1]  the role's zset (si:watchers, si:dispatchers or si:apis)
-- KEYS[2]  si:node:<id>
-- ARGV[1]  node id
-- Returns  1 when the node was registered, 0 otherwise
--
-- Atomic so that the fleet view never shows a half-removed node.
local n = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return n
