-- tracer_sent: records a tracer mail about to be submitted.
--
-- KEYS[1]  si:{k}:tracer:<id>
-- ARGV[1]  uid   ARGV[2]  provider code   ARGV[3]  seconds to keep the record
-- Returns  sent_at, ms by Redis's clock
--
-- A script so that sent_at is Redis's TIME, the clock record_mail takes
-- detected_at from: the latency is then free of the nodes' clock skew. It
-- is written before the SMTP transaction starts, so a detection can never
-- come first; the latency includes the submission.
local t = redis.call('TIME')
local now = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
redis.call('HSET', KEYS[1], 'uid', ARGV[1], 'code', ARGV[2], 'sent_at', now, 'result',
           'sending')
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return now
