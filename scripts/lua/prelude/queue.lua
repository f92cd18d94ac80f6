-- prelude/queue: local functions that scripts/embed-lua.sh puts before each
-- script of scripts/lua/ that calls one of them (this file is not a script of
-- its own). What the delivery queue's scripts must all do the same way is
-- written here once.
--
-- The queue of shard k (core/schema.h): each partner pid has a ready list
-- si:{k}:ready:<pid> (LPUSH in, RPOP out), and si:{k}:ready_partners is the
-- round robin of partners with ready events. Invariant: a partner is in
-- ready_partners exactly when its ready list is not empty, so it joins when
-- its list goes from empty to one event (event_claim drops it when it finds
-- the list empty). A join is announced with PUBLISH si:wake <k>, so idle
-- dispatchers claim the shard at once instead of at their next sweep.

-- Returns now in ms: given (a caller's clock, in ms) unless it is nil or "",
-- else Redis TIME.
local function now_ms(given)
    if given ~= nil and given ~= '' then
        return tonumber(given)
    end
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Tells dispatchers that shard k of ready_partners key rp has new work.
local function wake(rp)
    redis.call('PUBLISH', 'si:wake', string.match(rp, '{([^}]*)}') or '')
end

-- Puts event eid of partner pid into its ready list: at the in end, or at the
-- out end (RPUSH) when is_first, for an event that has waited longest and is
-- next in line. Keeps the invariant: a partner whose list was empty joins rp.
-- Returns true when it joined (the caller then wakes dispatchers, once).
local function ready_push(ready, rp, pid, eid, is_first)
    local len
    if is_first then
        len = redis.call('RPUSH', ready, eid)
    else
        len = redis.call('LPUSH', ready, eid)
    end
    if len == 1 then
        redis.call('RPUSH', rp, pid)
        return true
    end
    return false
end

-- Queues a new event eid of partner pid (ready_push at the in end) and wakes
-- dispatchers when the partner joined the round robin.
local function enqueue(ready, rp, pid, eid)
    if ready_push(ready, rp, pid, eid, false) then
        wake(rp)
    end
end

-- Stores and queues a user_connected or user_disconnected event, made and
-- sealed by the api, in the script that writes the user's transition (so a
-- user never changes without its event, whatever fails between two calls):
-- ev has type, id, pid, uid, code, tag, sha1, payload and now (ms). Nothing
-- is stored when partner hash pkey has no URL for the type or event hash
-- kevt exists already (event ids are deterministic). Returns 1 when queued,
-- else 0.
local function user_event(pkey, kevt, ready, rp, ev)
    local url = redis.call('HGET', pkey, ev.type .. '_webhook_url')
    if not url or url == '' or redis.call('EXISTS', kevt) == 1 then
        return 0
    end
    redis.call('HSET', kevt, 'id', ev.id, 'pid', ev.pid, 'type', ev.type, 'uid', ev.uid, 'code',
               ev.code, 'tag', ev.tag, 'sha1', ev.sha1, 'payload', ev.payload, 'created_at',
               ev.now, 'attempts', '0', 'state', 'ready')
    enqueue(ready, rp, ev.pid, ev.id)
    return 1
end
