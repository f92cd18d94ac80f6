-- provider_delete: removes a provider no connection uses.
--
-- KEYS[1]  si:provider:<code>
-- KEYS[2]  si:providers
-- ARGV[1]  code
-- Returns  'ok', 'missing' or 'in_use'
--
-- Atomic with connection_create's check of the provider, so a connection
-- never names a deleted provider.
if redis.call('EXISTS', KEYS[1]) == 0 then
    return 'missing'
end
if tonumber(redis.call('HGET', KEYS[1], 'connections_count') or '0') > 0 then
    return 'in_use'
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 'ok'
