-- POST /v1/messages: one message for a random contact of BENCH_CONTACTS_FILE, stamped now,
-- with an externalId unique across runs (BENCH_RUN_ID), threads (tid) and requests.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local contacts = common.lines(os.getenv("BENCH_CONTACTS_FILE"))
local run_id = os.getenv("BENCH_RUN_ID") or "0"
local counter = 0
tid = 0
setup = common.setup
done = common.done

function init(args)
  math.randomseed(tid * 7919 + os.time())
end

function request()
  counter = counter + 1
  local contact = contacts[math.random(#contacts)]
  local direction = (math.random() < 0.5) and "inbound" or "outbound"
  local ts = os.time() * 1000 - math.random(0, 999)
  local body = string.format(
    '{"contactId":"%s","direction":"%s","content":"bench message %d of thread %d",' ..
    '"timestamp":%d,"externalId":"bench-%s-%d-%d"}',
    contact, direction, counter, tid, ts, run_id, tid, counter)
  return wrk.format("POST", "/v1/messages", common.headers, body)
end
