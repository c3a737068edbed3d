-- Shared by every bench script: credentials from the environment, a JSON summary at the end.
--   BENCH_API_KEY   the bench tenant's key (sent as X-API-Key)
--   BENCH_OUT       where done() writes {"requests", "duration_s", "rps", "p50_ms", ...}
local common = {}

common.headers = {
  ["X-API-Key"] = os.getenv("BENCH_API_KEY") or "",
  ["Content-Type"] = "application/json",
}

function common.lines(path)
  local out = {}
  if path == nil or path == "" then return out end
  for line in io.lines(path) do
    if line ~= "" then out[#out + 1] = line end
  end
  return out
end

-- wrk calls done() once, in the main Lua state, after every thread has stopped.
function common.done(summary, latency, requests)
  local e = summary.errors
  local dur = summary.duration / 1e6
  local out = io.open(os.getenv("BENCH_OUT"), "w")
  out:write(string.format(
    '{"requests": %d, "duration_s": %.3f, "rps": %.2f, "p50_ms": %.3f, "p90_ms": %.3f, ' ..
    '"p99_ms": %.3f, "max_ms": %.3f, "mean_ms": %.3f, "errors_connect": %d, "errors_read": %d, ' ..
    '"errors_write": %d, "errors_status": %d, "errors_timeout": %d, "bytes": %d}\n',
    summary.requests, dur, summary.requests / dur,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, latency.mean / 1000,
    e.connect, e.read, e.write, e.status, e.timeout, summary.bytes))
  out:close()
end

-- Give each wrk thread a distinct number (setup runs in the main state, before init).
local thread_counter = 0
function common.setup(thread)
  thread_counter = thread_counter + 1
  thread:set("tid", thread_counter)
end

return common
