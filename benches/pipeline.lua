-- wrk script: send DEPTH requests in each write (HTTP/1.1 pipelining);
-- wrk then counts every response. Usage:
--   wrk -t1 -c100 -d10s -s benches/pipeline.lua http://127.0.0.1:PORT/healthz -- 16
local batch

init = function(args)
  local depth = tonumber(args[1]) or 16
  local parts = {}
  for i = 1, depth do
    parts[i] = wrk.format()
  end
  batch = table.concat(parts)
end

request = function()
  return batch
end
