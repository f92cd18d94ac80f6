-- record_mail: turns one new message into exactly one queued event.
--
-- KEYS[1]  si:{k}:lease:<uid>
-- KEYS[2]  si:{k}:alive:<node>:<g>   the caller's alive key
-- KEYS[3]  si:{k}:cur:<uid>
-- KEYS[4]  si:{k}:evt:<eid>          eid = <uid>.<uidvalidity>.<message UID>
-- KEYS[5]  si:{k}:ready:<pid>
-- KEYS[6]  si:{k}:ready_partners
-- KEYS[7]  si:{k}:user:<uid>
-- ARGV[1]  <node>:<g>, the caller's token
-- ARGV[2]  UIDVALIDITY
-- ARGV[3]  message UID
-- ARGV[4]  event id
-- ARGV[5]  partner id
-- ARGV[6]  the caller's cursor: the last UID it saw recorded
-- ARGV[7..] field, value pairs of the event hash (core/schema.h "Event
--          fields": type, uid, code, tag, sha1, payload, created_at), and
--          optionally 'tracer', <id>: the message's subject is "TRACER: <id>"
--          (not an event field); 'mailbox', <mailbox as configured>: a
--          mailbox other than INBOX, whose cursor is the fields suffixed
--          ':<mailbox>' (see cursor_baseline.lua; kept as an event field);
--          'gm_msgid', <X-GM-MSGID>: a Gmail message, announced once per user
--          whichever of the watched labels it shows up in (the per-user zset
--          si:{k}:gm:<uid>, derived from KEYS[7], keeps the newest 10,000
--          ids; not an event field)
-- Returns  {1, 'recorded'}; {1, 'tracer', latency ms or ''} when the
--          message is a tracer of a tracer-enabled user (enable_tracer 1 in
--          KEYS[7]): the cursor advances, no event is queued (tracers are
--          not announced, as in the original), and when the sender's
--          record si:{k}:tracer:<id> (derived from KEYS[7] like si:{k}:users)
--          is there it gets detected_at and latency_ms (detected_at -
--          sent_at, both Redis's clock; '' in the reply without a record:
--          someone else sent it); or {0, reason} with nothing written:
--          'stale' the caller does not hold the lease or its alive key is
--          gone (it must drop its sessions), 'uidvalidity' the cursor has
--          another UIDVALIDITY (re-baseline with cursor_baseline), 'behind'
--          the cursor is below the caller's (Redis lost writes it
--          acknowledged: the caller examines the mailbox again from this
--          cursor, or the messages in between would never be announced),
--          {1, 'duplicate'} when the Gmail message was announced already
--          under another label (the cursor advances, nothing is queued),
--          'old' the UID is not above the cursor (already recorded), 'nocursor'
--          (none, or one of an earlier epoch of the user: written before an
--          archive and a restore, see cursor_baseline.lua),
--          'unwatched' the user is no longer in its shard's users zset
--          (archived, disconnected or deleted since the watcher last looked:
--          its mail is not announced, and the watcher drops the session)
--
-- Atomic so that the lease check, the cursor check, the event, its place in
-- the queue and the cursor's advance happen together: a stale watcher can
-- never publish, and each (user, UIDVALIDITY, UID) is enqueued exactly once.
-- If Redis loses its last second of writes, the cursor and the event vanish
-- together and the watcher fetches the message again: at least once, never
-- lost. ARGV[6] is what makes that hold when a later message reaches Redis
-- before the watcher has noticed the loss: without it, that message would
-- move the cursor past the lost ones. It queues with enqueue() of prelude/queue.lua, as event_enqueue does.
if #ARGV < 6 or (#ARGV - 6) % 2 ~= 0 then
    return redis.error_reply('ERR record_mail: want token, uidvalidity, uid, eid, pid, cursor, pairs')
end
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('EXISTS', KEYS[2]) == 0 then
    return {0, 'stale'}
end
-- si:{k}:users, derived from KEYS[7] (same {k} tag, so the same slot).
local prefix, user = string.match(KEYS[7], '^(si:{[^}]*}:)user:(.+)$')
if not prefix or admitted(prefix .. 'users', user) == 0 then
    return {0, 'unwatched'}
end
local mailbox, gm_msgid, tracer = nil, nil, nil
for i = 7, #ARGV, 2 do
    if ARGV[i] == 'tracer' then
        tracer = ARGV[i + 1]
    elseif ARGV[i] == 'mailbox' then
        mailbox = ARGV[i + 1]
    elseif ARGV[i] == 'gm_msgid' then
        gm_msgid = ARGV[i + 1]
    end
end
local sfx = (mailbox and mailbox ~= '') and (':' .. mailbox) or ''
local cur = redis.call('HMGET', KEYS[3], 'uidvalidity' .. sfx, 'last_uid' .. sfx, 'epoch' .. sfx)
if not cur[1] or not cur[2] or
    (cur[3] or '0') ~= (redis.call('HGET', KEYS[7], 'cursor_epoch') or '0') then
    return {0, 'nocursor'}
end
if cur[1] ~= ARGV[2] then
    return {0, 'uidvalidity'}
end
local last = tonumber(cur[2])
if last < (tonumber(ARGV[6]) or 0) then
    return {0, 'behind'}
end
local uid = tonumber(ARGV[3])
if not uid or uid <= last then
    return {0, 'old'}
end
redis.call('HSET', KEYS[3], 'last_uid' .. sfx, ARGV[3])
if tracer and redis.call('HGET', KEYS[7], 'enable_tracer') == '1' then
    local rec = prefix .. 'tracer:' .. tracer
    local sent = tonumber(redis.call('HGET', rec, 'sent_at') or '')
    local latency = ''
    if sent and redis.call('HGET', rec, 'uid') == user and
        not redis.call('HGET', rec, 'detected_at') then
        local now = now_ms()
        latency = tostring(math.max(0, now - sent))
        redis.call('HSET', rec, 'detected_at', tostring(now), 'latency_ms', latency)
    end
    return {1, 'tracer', latency}
end
if redis.call('EXISTS', KEYS[4]) == 1 then
    return {0, 'old'}
end
if gm_msgid then
    local seen = prefix .. 'gm:' .. user
    if redis.call('ZSCORE', seen, gm_msgid) then
        return {1, 'duplicate'}
    end
    redis.call('ZADD', seen, now_ms(), gm_msgid)
    redis.call('ZREMRANGEBYRANK', seen, 0, -10001)
end
local now = tostring(now_ms())
local fields = {'id', ARGV[4], 'pid', ARGV[5], 'attempts', '0', 'state', 'ready'}
local has_created = false
for i = 7, #ARGV, 2 do
    local name = ARGV[i]
    if name ~= 'id' and name ~= 'pid' and name ~= 'attempts' and name ~= 'state' and
        name ~= 'tracer' and name ~= 'gm_msgid' then
        fields[#fields + 1] = name
        fields[#fields + 1] = ARGV[i + 1]
        if name == 'created_at' then
            has_created = true
        end
    end
end
if not has_created then
    fields[#fields + 1] = 'created_at'
    fields[#fields + 1] = now
end
redis.call('HSET', KEYS[4], unpack(fields))
enqueue(KEYS[5], KEYS[6], ARGV[5], ARGV[4])
redis.call('HSET', KEYS[7], 'last_email_at', now)
return {1, 'recorded'}
