-- event_gone: a webhook URL answered 410 Gone, so the partner's URL for that
-- event type is turned off (its events go to dead letters, replayable) until
-- the partner sets a URL again, which clears the flag.
--
-- KEYS[1]  si:partner:<pid>
-- ARGV[1]  the URL field (new_mail_webhook_url, user_connected_webhook_url,
--          user_disconnected_webhook_url)
-- ARGV[2]  the URL the request went to
-- ARGV[3]  the flag field (<type>_webhook_disabled)
-- ARGV[4]  the reason written into it (status, URL, time)
-- Returns  1 when disabled, 0 when the field no longer holds that URL (the
--          partner changed it meanwhile, or is gone): nothing is written
--
-- Atomic so that a URL the partner has just replaced is never disabled
-- because of the old one's answer.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
    return 0
end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
return 1
