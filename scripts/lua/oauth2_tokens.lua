-- oauth2_tokens: a watcher stores what a token refresh gave: the access
-- token, its expiry and, when the provider rotated it, the new refresh token.
--
-- KEYS[1]  si:{k}:user:<uid>
-- ARGV[1]  the sealed secret (refresh token) the refresh was made with
-- ARGV[2]  the new sealed secret (rotated refresh token), or '' to keep it
-- ARGV[3]  the sealed access token (AAD si:user:<uid>:oauth2_access_token)
-- ARGV[4]  oauth2_expires_at, ms
-- Returns  1 stored, 0 the user's secret changed meanwhile or the user is
--          gone (nothing written)
--
-- A compare-and-set on the secret rather than a lease check: a rotated
-- refresh token is the only one that still works, so it is kept even when
-- the lease moved during the request, but never over a secret the api
-- wrote since (the user connected again).
if redis.call('HGET', KEYS[1], 'secret') ~= ARGV[1] then
    return 0
end
if ARGV[2] ~= '' then
    redis.call('HSET', KEYS[1], 'secret', ARGV[2])
end
redis.call('HSET', KEYS[1], 'oauth2_access_token', ARGV[3], 'oauth2_expires_at', ARGV[4])
return 1
