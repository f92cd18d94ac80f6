-- node_drain: an operator asks a running node to drain (the admin API's
-- POST /admin/api/fleet/<id>/drain).
--
-- KEYS[1]  si:node:<id>
-- Returns  the started_at of the incarnation asked, or false when the node
--          is unknown (its hash expired, or it stopped)
--
-- drain_requested names the incarnation (its started_at), so a node that
-- restarts with the same id before the hash expires is not drained by an
-- old request. The node sees the field in the reply of its next heartbeat
-- (node_heartbeat.lua) and stops as on SIGTERM. Atomic so that a request
-- never re-creates the hash of a node that just left (its TTL would be
-- gone).
local started = redis.call('HGET', KEYS[1], 'started_at')
if not started then
    return false
end
redis.call('HSET', KEYS[1], 'drain_requested', started)
return started
