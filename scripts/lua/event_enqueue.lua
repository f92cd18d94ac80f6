-- event_enqueue: stores one event and makes it ready for delivery (the api's
-- user_connected / user_disconnected / webhook_test events; the watcher's
-- record_mail pushes new_mail events the same way).
--
-- KEYS[1]  si:{k}:evt:<eid>
-- KEYS[2]  si:{k}:ready:<pid>       (LPUSH in, RPOP out)
-- KEYS[3]  si:{k}:ready_partners    (round robin of partners with ready events)
-- ARGV[1]  event id
-- ARGV[2]  partner id
-- ARGV[3..] field, value pairs of the event hash (core/schema.h "Event
--          fields": type, uid, code, tag, sha1, payload, created_at); id,
--          pid, attempts (0) and state (ready) are written by the script;
--          created_at defaults to Redis TIME in ms
-- Returns  1 when the event was stored and queued, 0 when an event with this
--          id already exists (nothing is written: event ids are
--          deterministic, so enqueueing twice is harmless)
--
-- Queued by enqueue() of prelude/queue.lua: when the partner's ready list was
-- empty it joins the round robin, and PUBLISH si:wake <k> tells dispatchers
-- to claim the shard at once instead of at their next sweep (a dispatcher
-- idle on this shard, or one that stopped claiming it because its other
-- partners had no free slot, would not look again before then).
--
-- Atomic so that the event hash, its id in the partner's ready list and the
-- partner in ready_partners appear together: a dispatcher never claims an id
-- without its data, an event is never stored without being queued, and a
-- retried enqueue never queues the same id twice.
if #ARGV < 2 or #ARGV % 2 ~= 0 then
    return redis.error_reply('ERR event_enqueue: want eid, pid and field/value pairs')
end
if redis.call('EXISTS', KEYS[1]) == 1 then
    return 0
end
local fields = {}
local has_created = false
for i = 3, #ARGV, 2 do
    local name = ARGV[i]
    if name ~= 'id' and name ~= 'pid' and name ~= 'attempts' and name ~= 'state' then
        fields[#fields + 1] = name
        fields[#fields + 1] = ARGV[i + 1]
        if name == 'created_at' then
            has_created = true
        end
    end
end
if not has_created then
    fields[#fields + 1] = 'created_at'
    fields[#fields + 1] = tostring(now_ms())
end
fields[#fields + 1] = 'id'
fields[#fields + 1] = ARGV[1]
fields[#fields + 1] = 'pid'
fields[#fields + 1] = ARGV[2]
fields[#fields + 1] = 'attempts'
fields[#fields + 1] = '0'
fields[#fields + 1] = 'state'
fields[#fields + 1] = 'ready'
redis.call('HSET', KEYS[1], unpack(fields))
enqueue(KEYS[2], KEYS[3], ARGV[2], ARGV[1])
return 1
