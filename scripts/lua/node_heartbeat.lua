-- node_heartbeat: one node's liveness beat, every 5 s.
--
-- KEYS[1]  the role's zset: si:watchers, si:dispatchers or si:apis
-- KEYS[2]  si:node:<id>
-- ARGV[1]  node id
-- ARGV[2]  ms after which a silent node's hash expires (the fleet view forgets it)
-- ARGV[3]  ms after which a silent node leaves the role's zset
-- ARGV[4..] field, value pairs for si:node:<id> (role, host, pid, version, state, ...)
-- Returns  {the Redis TIME in ms written as the heartbeat, drain (1 when an
--          operator asked this incarnation to drain: node_drain.lua set
--          drain_requested to the started_at this beat writes, else 0)}
--
-- Atomic so that a reader never sees the zset entry without the node hash,
-- and the heartbeat uses one clock (Redis TIME) for every node, whatever their
-- own clocks say.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
local fields = {'heartbeat_ms', tostring(now)}
for i = 4, #ARGV do
    fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
local f = redis.call('HMGET', KEYS[2], 'drain_requested', 'started_at')
local drain = 0
if f[1] and f[1] == f[2] then
    drain = 1
end
return {now, drain}
