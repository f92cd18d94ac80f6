-- user_update: changes a user's fields, and archives or restores it when
-- `archived` changes (the original's PUT/PATCH, "archived=false" restores).
--
-- Also moves the user's entries in si:ix:user, the admin search index
-- (ix_user() of prelude/index.lua, which names it).
--
-- KEYS[1]  si:{k}:user:<uid>
-- KEYS[2]  si:{k}:users
-- KEYS[3]  si:changes
-- KEYS[4]  si:conn:<pid>:<code>:users
-- KEYS[5]  si:tag:<pid>:<code>:<lower tag after the update>
-- KEYS[6]  si:email:<pid>:<code>:<lower email after the update> (any key if none)
-- KEYS[7]  si:partner:<pid>
-- KEYS[8]  si:{k}:evt:<uid>.connected.<now>
-- KEYS[9]  si:{k}:evt:<uid>.disconnected.<now>
-- KEYS[10] si:{k}:ready:<pid>
-- KEYS[11] si:{k}:ready_partners
-- ARGV[1]  uid      ARGV[2]  k      ARGV[3]  kind: plain | oauth2
-- ARGV[4]  tag and ARGV[5] email the api read before (it built KEYS[5],
--          KEYS[6] and the events' payloads from them)
-- ARGV[6]  has tag (0|1)       ARGV[7]  tag
-- ARGV[8]  has email           ARGV[9]  email
-- ARGV[10] has username        ARGV[11] username
-- ARGV[12] has secret          ARGV[13] secret (encrypted, '' clears)
-- ARGV[14] archived: -1 unchanged, 0, 1
-- ARGV[15] enable_tracer: -1 unchanged, 0, 1
-- ARGV[16] now ms      ARGV[17] sha1 of the tag after the update
-- ARGV[18] user_connected payload, ARGV[19] user_disconnected payload
--          (each encrypted with AAD si:evt:<its event id>)
-- ARGV[20] has mailboxes (0|1)  ARGV[21] the user's own mailboxes
--          (canonical JSON; '' deletes them: it inherits its connection's)
-- Returns  {'ok', connected_at before, connected_at after, now ms, op,
--          queued (0|1)}, or
--          {'missing'}, {'retry'} (the user changed since the api read it:
--          read again and retry), {'conflict', 'tag'|'email'}
--
-- Archiving or restoring moves the shard's archived count (si:{k}:count,
-- derived from KEYS[1], same {k}) with the flag.
--
-- Atomic for the same reasons as user_create: uniqueness among live users,
-- indexes, the shard's set of users to watch and the watchers' change record
-- move together or not at all; so does the user_connected or
-- user_disconnected event of a change of connected_at, so no failure of the
-- api between two calls can lose it.
local user = KEYS[1]
local f = redis.call('HMGET', user, 'pid', 'code', 'tag', 'email', 'username', 'secret',
                     'archived', 'connected_at', 'enable_tracer')
if not f[1] then
    return {'missing'}
end
local pid, code = f[1], f[2]
local old_tag, old_email = f[3] or '', f[4] or ''
if old_tag ~= ARGV[4] or old_email ~= ARGV[5] then
    return {'retry'}
end
local uid, kind = ARGV[1], ARGV[3]
local tag, email, username, secret = old_tag, old_email, f[5] or '', f[6] or ''
if ARGV[6] == '1' then tag = ARGV[7] end
if ARGV[8] == '1' then email = ARGV[9] end
if ARGV[10] == '1' then username = ARGV[11] end
if ARGV[12] == '1' then secret = ARGV[13] end
local was_archived = f[7] == '1'
local archived = was_archived
if ARGV[14] == '0' then archived = false end
if ARGV[14] == '1' then archived = true end
local tracer = f[9] or '0'
if ARGV[15] ~= '-1' then tracer = ARGV[15] end

if not archived then
    local holder = redis.call('GET', KEYS[5])
    if holder and holder ~= uid then
        return {'conflict', 'tag'}
    end
    if email ~= '' then
        holder = redis.call('GET', KEYS[6])
        if holder and holder ~= uid then
            return {'conflict', 'email'}
        end
    end
end

local now = ARGV[16]
-- Drop the old index entries that no longer apply.
if not was_archived then
    local old_tag_key = 'si:tag:' .. pid .. ':' .. code .. ':' .. string.lower(old_tag)
    if (archived or old_tag_key ~= KEYS[5]) and redis.call('GET', old_tag_key) == uid then
        redis.call('DEL', old_tag_key)
    end
    if old_email ~= '' then
        local old_email_key = 'si:email:' .. pid .. ':' .. code .. ':' .. string.lower(old_email)
        if (archived or email == '' or old_email_key ~= KEYS[6]) and
            redis.call('GET', old_email_key) == uid then
            redis.call('DEL', old_email_key)
        end
    end
end
if not archived then
    redis.call('SET', KEYS[5], uid)
    if email ~= '' then
        redis.call('SET', KEYS[6], uid)
    end
end
if string.lower(tag) ~= string.lower(old_tag) then
    redis.call('ZREM', KEYS[4], string.lower(old_tag) .. '\31' .. uid)
    redis.call('ZADD', KEYS[4], 0, string.lower(tag) .. '\31' .. uid)
end

local old_connected = f[8] or ''
local complete = secret ~= '' and ((kind == 'plain' and username ~= '') or
    (kind == 'oauth2' and email ~= ''))
local connected_at = ''
if complete then
    connected_at = old_connected
    if connected_at == '' then
        connected_at = now
    end
end
local fields = {'tag', tag, 'email', email, 'username', username, 'secret', secret,
                'connected_at', connected_at, 'enable_tracer', tracer, 'updated_at', now}
local op = 'update'
local count = string.gsub(user, ':user:.*$', ':count', 1)
if archived and not was_archived then
    op = 'archive'
    redis.call('HINCRBY', count, 'archived', 1)
    fields[#fields + 1] = 'archived'
    fields[#fields + 1] = '1'
    fields[#fields + 1] = 'state'
    fields[#fields + 1] = 'archived'
elseif was_archived and not archived then
    -- Watched from new mail on: the cursor goes (see user_restore.lua).
    op = 'restore'
    redis.call('HINCRBY', count, 'archived', -1)
    redis.call('DEL', (string.gsub(user, ':user:', ':cur:', 1)))
    fields[#fields + 1] = 'archived'
    fields[#fields + 1] = '0'
    fields[#fields + 1] = 'state'
    fields[#fields + 1] = 'idle'
    fields[#fields + 1] = 'last_error'
    fields[#fields + 1] = ''
end
redis.call('HSET', user, unpack(fields))
if ARGV[20] == '1' then
    if ARGV[21] == '' then
        redis.call('HDEL', user, 'mailboxes')
    else
        redis.call('HSET', user, 'mailboxes', ARGV[21])
    end
end
ix_user(uid, {tag = old_tag, email = old_email, username = f[5]},
        {tag = tag, email = email, username = username})
if op == 'archive' or op == 'restore' then
    -- See user_archive.lua and user_restore.lua.
    redis.call('HINCRBY', user, 'cursor_epoch', 1)
end
tracer_users(KEYS[2], uid, tracer)
if connected_at ~= '' and not archived then
    admit(KEYS[2], uid)
else
    redis.call('ZREM', KEYS[2], uid)
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', '100000', '*', 'uid', uid, 'k', ARGV[2], 'op', op)
local queued = 0
if (old_connected ~= '') ~= (connected_at ~= '') then
    local ev = {type = 'user_connected', id = uid .. '.connected.' .. now, pid = pid, uid = uid,
                code = code, tag = tag, sha1 = ARGV[17], payload = ARGV[18], now = now}
    local kevt = KEYS[8]
    if connected_at == '' then
        ev.type, ev.id, ev.payload, kevt = 'user_disconnected', uid .. '.disconnected.' .. now,
            ARGV[19], KEYS[9]
    end
    queued = user_event(KEYS[7], kevt, KEYS[10], KEYS[11], ev)
end
return {'ok', old_connected, connected_at, now, op, queued}
