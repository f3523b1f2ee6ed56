-- wrk script: POST one JSON body (a tusd v2 hook) read from a file.
--   wrk -s benches/wrk/post.lua http://127.0.0.1:PORT/tusd -- body.json [DELAY_MS]
-- With DELAY_MS, each connection waits that long after every response before
-- its next request (wrk's delay()): a paced, lighter load. wrk starts the
-- latency clock when the request is written, after the delay.
local pause = nil

function init(args)
  local f = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
  if args[2] then
    pause = tonumber(args[2])
    -- Defined only when pacing: wrk checks for delay() after init().
    function delay()
      return pause
    end
  end
end
