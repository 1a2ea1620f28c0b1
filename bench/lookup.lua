-- Random lookups of conf_0000000000 .. conf_<ROWS-1>; one in ten asks for an id that does not exist.
local rows = tonumber(os.getenv("ROWS") or "100000")
math.randomseed(os.time())

request = function()
  local n = math.random(0, rows - 1)
  local id
  if math.random(10) == 1 then
    id = string.format("missing_%010d", n)
  else
    id = string.format("conf_%010d", n)
  end
  return wrk.format("GET", "/api/v1/voice/recordings/" .. id)
end

done = function(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "socket_errors": %d, "non_2xx_3xx": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
