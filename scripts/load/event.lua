-- wrk script: POST / with a com.example.user.create CloudEvent in binary
-- mode, a unique event id, username and email per request.
local counter = 0
local nthreads = 0
function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
end
function init(args)
  run = args[1] or "r"
end
function request()
  counter = counter + 1
  local name = string.format("%s_%d_%d", run, tid, counter)
  return wrk.format("POST", "/", {
    ["Content-Type"] = "application/json",
    ["Ce-Specversion"] = "1.0",
    ["Ce-Type"] = "com.example.user.create",
    ["Ce-Source"] = "/load",
    ["Ce-Id"] = name,
  }, '{"username":"' .. name .. '","email":"' .. name .. '@example.com"}')
end
function done(summary, latency, requests)
  io.write(string.format("p50_ms=%.2f p99_ms=%.2f\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
