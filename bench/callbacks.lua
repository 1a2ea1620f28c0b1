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

dofile(os.getenv("BENCH_DIR") .. "/report.lua")
