-- event_delete: deletes a dead letter for good (the dashboard's DELETE
-- /admin/api/dead-letters/{id}): its hash, payload included, and its entry
-- in the shard's dead set. Its delivery log entries stay (they expire with
-- the stream's cap).
--
-- KEYS[1]  si:{k}:evt:<eid>
-- KEYS[2]  si:{k}:dead
-- ARGV[1]  event id
-- Returns  1 when deleted, 0 when the event is not a dead letter (nothing
--          changed), -1 when there is no such event
--
-- Atomic so that an event replayed or delivered meanwhile is never deleted.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
    return -1
end
if state ~= 'dead' then
    return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
return 1
