-- prelude/admit: local functions that scripts/embed-lua.sh puts before each
-- script that admits users to or removes them from si:{k}:users (this file
-- is not a script of its own).
--
-- si:{k}:users is a zset scored by admission: the Redis TIME (ms) at which
-- the user last became one to watch (created or connected, restored). The
-- watchers place users in that order (core/fleet.h fleet_place_ranked()), so
-- when the fleet is full the users admitted last are the ones left
-- unwatched, and a user admitted into a full fleet never pushes out one
-- watched before it. An update of a user already listed keeps its score.

-- Lists uid in users (si:{k}:users) unless it is there already.
local function admit(users, uid)
    local t = redis.call('TIME')
    redis.call('ZADD', users, 'NX', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), uid)
end

-- 1 when uid is listed in users (si:{k}:users), else 0.
local function admitted(users, uid)
    return redis.call('ZSCORE', users, uid) and 1 or 0
end
