-- wrk script of tests/bench/bench_api.c: POST user, each request a new tag
-- (thread number and counter), so every request is a real create (201).
-- The API key comes from BENCH_API_KEY.
-- SPDX-License-Identifier: MIT
local threads = 0
local key = os.getenv("BENCH_API_KEY") or ""

function setup(thread)
    threads = threads + 1
    thread:set("id", threads)
end

local counter = 0

function request()
    counter = counter + 1
    local body = "tag=b" .. id .. "-" .. counter .. "&login_username=u&login_password=p"
    return wrk.format("POST", "/api/v2/connections/PLAIN/users",
                      {["x-api-key"] = key,
                       ["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end
