-- rate_limit: finds the partner of an API key and takes one token from the
-- key's bucket (token bucket: `rate` tokens a second, at most `burst` saved).
--
-- KEYS[1]  si:apikey:<sha256 hex of the key>
-- KEYS[2]  si:rl:<the same hex>   hash: tokens (float text), ts (ms)
-- ARGV[1]  rate, tokens per second; 0 turns the limit off
-- ARGV[2]  burst, the bucket's size
-- Returns  {} for an unknown key (no bucket is made for it), else
--          {pid, allowed (1|0), retry_after_ms, api_key, api_key_old,
--           api_key_old_until} (the last three from si:partner:<pid>, false
--          when absent: the caller checks the key against them)
--
-- Atomic so that parallel requests of one key on many api nodes and threads
-- share one bucket exactly; time is Redis TIME, one clock for every node.
-- The bucket expires once it would be full again, so idle keys cost nothing.
-- The partner's stored keys come with the answer (si:partner:<pid> is derived
-- from the lookup's value, not in KEYS), saving every request a round trip.
local pid = redis.call('GET', KEYS[1])
if not pid then
    return {}
end
local k = redis.call('HMGET', 'si:partner:' .. pid, 'api_key', 'api_key_old', 'api_key_old_until')
local rate = tonumber(ARGV[1])
if rate <= 0 then
    return {pid, 1, 0, k[1], k[2], k[3]}
end
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[2], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
if now > ts then
    tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
end
local allowed, retry = 0, 0
if tokens >= 1 then
    tokens = tokens - 1
    allowed = 1
else
    retry = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[2], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[2], math.ceil(burst * 1000 / rate) + 1000)
return {pid, allowed, retry, k[1], k[2], k[3]}
