-- POST /v1/messages/batch: BENCH_BATCH_SIZE (default 1,000) messages for random contacts,
-- stamped now, each with a unique externalId.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local contacts = common.lines(os.getenv("BENCH_CONTACTS_FILE"))
local run_id = os.getenv("BENCH_RUN_ID") or "0"
local size = tonumber(os.getenv("BENCH_BATCH_SIZE") or "1000")
local counter = 0
tid = 0
setup = common.setup
done = common.done

function init(args)
  math.randomseed(tid * 7919 + os.time())
end

function request()
  local items = {}
  local now = os.time() * 1000
  for i = 1, size do
    counter = counter + 1
    items[i] = string.format(
      '{"contactId":"%s","direction":"%s","content":"bench batch message %d",' ..
      '"timestamp":%d,"externalId":"benchb-%s-%d-%d"}',
      contacts[math.random(#contacts)], (math.random() < 0.5) and "inbound" or "outbound",
      counter, now - math.random(0, 59999), run_id, tid, counter)
  end
  local body = '{"messages":[' .. table.concat(items, ",") .. ']}'
  return wrk.format("POST", "/v1/messages/batch", common.headers, body)
end
