-- GET the URL's path (and query) given on the wrk command line, authenticated.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
wrk.method = "GET"
wrk.headers["X-API-Key"] = common.headers["X-API-Key"]
done = common.done
