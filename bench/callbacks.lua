-- Posts the callbacks in BODIES (one url-encoded form a line), in that order, round and round.
local bodies = {}
for line in io.lines(os.getenv("BODIES")) do
  bodies[#bodies + 1] = line
end
local next_body = 0
local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }

request = function()
  next_body = next_body % #bodies + 1
  return wrk.format("POST", "/api/v1/voice/callback", headers, bodies[next_body])
end

done = function(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "socket_errors": %d, "non_2xx_3xx": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
