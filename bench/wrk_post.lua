-- wrk script: POST bodies read from BODIES_FILE (one JSON document a line), in turn;
-- headers given with -H (e.g. Authorization) are sent too; prints one JSON line of
-- figures when done.
local bodies = {}
local index = 0
local headers = {["Content-Type"] = "application/json"}

function init(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  for name, value in pairs(wrk.headers) do headers[name] = value end
end

function request()
  index = index % #bodies + 1
  return wrk.format("POST", "/v1/rewards", headers, bodies[index])
end

function done(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "seconds": %.6f, "errors": %d, "non2xx": %d, "p50_ms": %.3f, "p99_ms": %.3f}\n',
    summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
