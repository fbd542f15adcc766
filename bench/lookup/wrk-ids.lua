-- wrk script of bench:lookup (bench/lookup/load.ts, --generator wrk).
-- Args after `--`: <customers> <seed>. Each request asks for a random
-- customer id in 1..customers (xorshift32, the bench's own sequence, one
-- stream per wrk thread); done() prints one line, `WRK_RESULT {json}`, with
-- the request and error counts, latency percentiles in µs from wrk's
-- histogram, and this process's CPU seconds from /proc/self/stat.
local bit = require("bit")
local customers, x = 10000, 1
local threads = 0

-- Runs in wrk's main Lua state, once per thread before it starts.
function setup(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end

function init(args)
  customers = tonumber(args[1] or "10000")
  -- Each thread has its own Lua state and the same args: its number makes its stream its own, the same every run.
  x = bit.tobit(tonumber(args[2] or "1") + (thread_no or 1) * 40503)
  if x == 0 then x = 1 end
end

function request()
  x = bit.bxor(x, bit.lshift(x, 13))
  x = bit.bxor(x, bit.rshift(x, 17))
  x = bit.bxor(x, bit.lshift(x, 5))
  -- bit ops are signed 32-bit: take the unsigned value before the modulo.
  local u = x % 4294967296
  return wrk.format(nil, "/customers/" .. (1 + u % customers) .. "/clv")
end

local function cpu_seconds()
  local f = io.open("/proc/self/stat", "r")
  if not f then return -1, -1 end
  local stat = f:read("*a")
  f:close()
  -- Fields after the command name (which may hold spaces): state is the 3rd field, utime the 14th.
  local rest = stat:match("%) (.*)$")
  local fields = {}
  for v in rest:gmatch("%S+") do fields[#fields + 1] = v end
  return tonumber(fields[12]) / 100, tonumber(fields[13]) / 100
end

function done(summary, latency, requests)
  local e = summary.errors
  local user, system = cpu_seconds()
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"durationUs":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
    .. '"latencyUs":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d},"cpuS":{"user":%.2f,"system":%.2f}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max,
    user, system))
end
