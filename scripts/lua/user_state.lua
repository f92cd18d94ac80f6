-- user_state: a watcher records what happened to a user's session (state,
-- last_error, last_login_at), visible through the API.
--
-- KEYS[1]  si:{k}:lease:<uid>
-- KEYS[2]  si:{k}:alive:<node>:<g>   the caller's alive key
-- KEYS[3]  si:{k}:user:<uid>
-- ARGV[1]  <node>:<g>, the caller's token
-- ARGV[2..] field, value pairs among state, last_error, last_login_at and
--          mailboxes_missing (the watched mailboxes not found on the server,
--          a JSON array; '' deletes the field: every one was found)
-- Returns  1 written, 0 the caller does not hold the lease (nothing written),
--          -1 the user no longer exists (deleted meanwhile)
--
-- Atomic with the lease check so that a stale watcher cannot overwrite what
-- the user's current owner reports.
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('EXISTS', KEYS[2]) == 0 then
    return 0
end
if redis.call('EXISTS', KEYS[3]) == 0 then
    return -1
end
local fields = {}
for i = 2, #ARGV - 1, 2 do
    local name = ARGV[i]
    if name == 'mailboxes_missing' and ARGV[i + 1] == '' then
        redis.call('HDEL', KEYS[3], name)
    elseif name == 'state' or name == 'last_error' or name == 'last_login_at' or
        name == 'mailboxes_missing' then
        fields[#fields + 1] = name
        fields[#fields + 1] = ARGV[i + 1]
    end
end
if #fields > 0 then
    redis.call('HSET', KEYS[3], unpack(fields))
end
return 1
