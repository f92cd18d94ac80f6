-- event_replay: sends a dead letter again (the api's POST
-- /api/v1/events/:id/replay, the dashboard). The event keeps its id, so the
-- receiver sees the same webhook-id; attempts start again from 0.
--
-- KEYS[1]  si:{k}:evt:<eid>
-- KEYS[2]  si:{k}:dead
-- KEYS[3]  si:{k}:ready:<pid>       (pid: the event's partner)
-- KEYS[4]  si:{k}:ready_partners
-- ARGV[1]  event id
-- ARGV[2]  partner id (must be the event's: a partner replays only its own)
-- Returns  1 when queued again, 0 when the event is not a dead letter
--          (nothing changed), -1 when there is no such event of this partner
--
-- Atomic so that the letter leaves the dead set and joins the ready list in
-- one step, with the round-robin invariant of event_enqueue kept.
local key = KEYS[1]
local v = redis.call('HMGET', key, 'state', 'pid')
if not v[2] or v[2] ~= ARGV[2] then
    return -1
end
if v[1] ~= 'dead' or not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
    return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HSET', key, 'state', 'ready', 'attempts', '0', 'last_error', '', 'next_at', '',
           'finished_at', '')
enqueue(KEYS[3], KEYS[4], ARGV[2], ARGV[1])
return 1
