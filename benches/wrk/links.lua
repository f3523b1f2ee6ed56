-- wrk script: GET a rotating list of pre-signed links, one request target per
-- line in the file given after `--` (benches/run.py writes it).
--   wrk -s benches/wrk/links.lua http://127.0.0.1:PORT -- links.txt
local links = {}
local i = 0

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then links[#links + 1] = line end
  end
  -- Threads start at different offsets so they do not ask in lockstep.
  i = math.random(#links)
end

function request()
  i = i % #links + 1
  return wrk.format("GET", links[i])
end
