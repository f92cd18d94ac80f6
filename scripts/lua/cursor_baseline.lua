-- cursor_baseline: fixes where a user's new mail starts, on first sight or
-- after the mailbox's UIDVALIDITY changed.
--
-- KEYS[1]  si:{k}:lease:<uid>
-- KEYS[2]  si:{k}:alive:<node>:<g>   the caller's alive key
-- KEYS[3]  si:{k}:cur:<uid>
-- KEYS[4]  si:{k}:user:<uid>
-- ARGV[1]  <node>:<g>, the caller's token
-- ARGV[2]  UIDVALIDITY the server reports now
-- ARGV[3]  UIDNEXT - 1: the highest UID that is not new
-- ARGV[4]  the user's cursor_epoch when the caller loaded it ('' for 0)
-- ARGV[5]  optional: the watched mailbox as configured ("\\Junk", "Work");
--          absent or '' for INBOX. INBOX's cursor is the fields uidvalidity,
--          last_uid, epoch; another mailbox's are the same names followed by
--          ':' and the mailbox (core/schema.h), in the same hash
-- Returns  {status, uidvalidity, last_uid}: status 1 when the baseline was
--          written (no cursor, or another UIDVALIDITY), 0 when the cursor
--          already matched (its values are returned and the caller fetches
--          from last_uid + 1), -1 when the caller does not hold the lease,
--          -2 when the user was archived or restored since the caller
--          loaded it (load it again; nothing is written)
--
-- Old mail is never announced: a new or reset cursor starts at UIDNEXT - 1.
-- Atomic with the lease check so that a stale incarnation cannot move the
-- cursor of a user another watcher now owns. The epoch check (cursor_epoch,
-- bumped by every archive and restore; the cursor keeps the epoch it was
-- written in) is what keeps a session that outlived an archive and a
-- restore (both within a Redis reconnect, unseen by its watcher) from
-- putting back the cursor the restore deleted: the restored user is
-- watched from new mail on.
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('EXISTS', KEYS[2]) == 0 then
    return {-1, '', ''}
end
if (redis.call('HGET', KEYS[4], 'cursor_epoch') or '0') ~= (ARGV[4] ~= '' and ARGV[4] or '0') then
    return {-2, '', ''}
end
local sfx = (ARGV[5] ~= nil and ARGV[5] ~= '') and (':' .. ARGV[5]) or ''
local cur = redis.call('HMGET', KEYS[3], 'uidvalidity' .. sfx, 'last_uid' .. sfx)
if cur[1] == ARGV[2] and cur[2] then
    return {0, cur[1], cur[2]}
end
redis.call('HSET', KEYS[3], 'uidvalidity' .. sfx, ARGV[2], 'last_uid' .. sfx, ARGV[3],
           'epoch' .. sfx, ARGV[4] ~= '' and ARGV[4] or '0')
return {1, ARGV[2], ARGV[3]}
