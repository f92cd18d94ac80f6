-- cursor_baseline: fixes where a user's new mail starts, on first sight or
-- after the mailbox's UIDVALIDITY changed.
--
-- KEYS[1]  si:{k}:lease:<uid>
-- KEYS[2]  si:{k}:alive:<node>:<g>   the caller's alive key
-- KEYS[3]  si:{k}:cur:<uid>
-- ARGV[1]  <node>:<g>, the caller's token
-- ARGV[2]  UIDVALIDITY the server reports now
-- ARGV[3]  UIDNEXT - 1: the highest UID that is not new
-- Returns  {status, uidvalidity, last_uid}: status 1 when the baseline was
--          written (no cursor, or another UIDVALIDITY), 0 when the cursor
--          already matched (its values are returned and the caller fetches
--          from last_uid + 1), -1 when the caller does not hold the lease
--
-- Old mail is never announced: a new or reset cursor starts at UIDNEXT - 1.
-- Atomic with the lease check so that a stale incarnation cannot move the
-- cursor of a user another watcher now owns.
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('EXISTS', KEYS[2]) == 0 then
    return {-1, '', ''}
end
local cur = redis.call('HMGET', KEYS[3], 'uidvalidity', 'last_uid')
if cur[1] == ARGV[2] and cur[2] then
    return {0, cur[1], cur[2]}
end
redis.call('HSET', KEYS[3], 'uidvalidity', ARGV[2], 'last_uid', ARGV[3])
return {1, ARGV[2], ARGV[3]}
