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

dofile(os.getenv("BENCH_DIR") .. "/report.lua")
