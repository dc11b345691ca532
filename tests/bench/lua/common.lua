-- Shared by every benchmark script (the generated BENCH table comes first).
-- Checks each response, paces requests when BENCH.rate is set, and prints one
-- "BENCH_JSON {...}" line from done().

local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk, bench_timespec *tp);
]]
local bench_ts = ffi.new("bench_timespec")

local function now_ms()
  ffi.C.clock_gettime(1, bench_ts) -- CLOCK_MONOTONIC
  return tonumber(bench_ts.tv_sec) * 1000 + tonumber(bench_ts.tv_nsec) / 1e6
end

-- Per-thread counters (globals, so done() can read them with thread:get).
bad, duplicates, behind, max_lag_ms, reused, sample = 0, 0, 0, 0, 0, ""

local bench_threads = {}

-- A data file written by wrk.py: one row per line, fields separated by tabs.
function read_rows(path)
  local rows = {}
  for line in io.lines(path) do
    local row = {}
    for f in string.gmatch(line, "[^\t]+") do row[#row + 1] = f end
    rows[#rows + 1] = row
  end
  return rows
end

function setup(thread)
  table.insert(bench_threads, thread)
  thread:set("tid", #bench_threads)
end

function response(status, headers, body)
  local failed = status < 200 or status > 299
  if not failed and BENCH.check_graphql and string.find(body, '"errors"', 1, true) then
    failed = true
  end
  if failed then
    bad = bad + 1
    if sample == "" then
      sample = tostring(status) .. " " .. string.sub(body or "", 1, 400)
    end
  end
  if BENCH.count_duplicates and string.find(body, 'duplicate"%s*:%s*true') then
    duplicates = duplicates + 1
  end
end

if BENCH.rate and BENCH.rate > 0 then
  -- Fixed rate: each thread hands out send slots on a fixed schedule; a
  -- connection that is free waits for the next slot. When no connection is
  -- free at a slot's time the request goes late, and the lag is reported.
  local interval = 1000.0 * BENCH.threads / BENCH.rate
  local next_slot = nil
  function delay()
    local now = now_ms()
    if next_slot == nil then next_slot = now end
    local slot = next_slot
    next_slot = next_slot + interval
    local wait = slot - now
    if wait < 0 then
      if -wait > 1 then behind = behind + 1 end
      if -wait > max_lag_ms then max_lag_ms = -wait end
      return 0
    end
    return math.floor(wait)
  end
end

local function json_string(s)
  s = string.gsub(s, '[%c"\\]', function(c)
    return string.format("\\u%04x", string.byte(c))
  end)
  return '"' .. s .. '"'
end

function done(summary, latency, requests)
  local t = { bad = 0, duplicates = 0, behind = 0, max_lag_ms = 0, reused = 0 }
  local first_sample = ""
  for _, thread in ipairs(bench_threads) do
    t.bad = t.bad + (thread:get("bad") or 0)
    t.duplicates = t.duplicates + (thread:get("duplicates") or 0)
    t.behind = t.behind + (thread:get("behind") or 0)
    t.reused = t.reused + (thread:get("reused") or 0)
    t.max_lag_ms = math.max(t.max_lag_ms, thread:get("max_lag_ms") or 0)
    local s = thread:get("sample") or ""
    if first_sample == "" then first_sample = s end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d},' ..
    '"bad":%d,"duplicates":%d,"behind":%d,"max_lag_ms":%.3f,"reused":%d,"sample":%s}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9),
    t.bad, t.duplicates, t.behind, t.max_lag_ms, t.reused, json_string(first_sample)))
end
