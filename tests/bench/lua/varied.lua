-- One query whose body no earlier request sent (a nonce in "extensions"):
-- every request misses the response cache and is executed.
local counter = 0
local prefix = nil

function init(args)
  prefix = BENCH.run_id .. "-" .. tid .. "-"
end

function request()
  counter = counter + 1
  local body = string.format(BENCH.body_format, prefix .. counter)
  return wrk.format("POST", BENCH.path, { ["Content-Type"] = "application/json" }, body)
end
