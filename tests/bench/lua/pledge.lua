-- createPledge with a new idempotency key on every request (unique per run,
-- thread and request) and a token from a pool of anonymous sessions.
local counter = 0
local tokens = nil
local prefix = nil

function init(args)
  tokens = {}
  for _, row in ipairs(read_rows(BENCH.data_file)) do tokens[#tokens + 1] = row[1] end
  prefix = BENCH.run_id .. "-" .. tid .. "-"
end

function request()
  counter = counter + 1
  local token = tokens[(counter * BENCH.threads + tid) % #tokens + 1]
  local body = string.format(BENCH.body_format, prefix .. counter)
  return wrk.format("POST", BENCH.path, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end
