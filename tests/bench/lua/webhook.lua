-- Signed provider events prepared in a data file (signature, body per line).
-- Thread n sends entries n, n + threads, ... so no two threads send the same
-- event; a thread that runs out starts again (each resent event counts as "reused").
local items = nil
local i = 0
local wrapped = false

function init(args)
  local all = read_rows(BENCH.data_file)
  items = {}
  for k = tid, #all, BENCH.threads do
    items[#items + 1] = all[k]
  end
end

function request()
  i = i + 1
  if i > #items then
    i = 1
    wrapped = true
  end
  if wrapped then reused = reused + 1 end
  local item = items[i]
  return wrk.format("POST", BENCH.path, {
    ["Content-Type"] = "application/json",
    ["CareForAll-Signature"] = item[1],
  }, item[2])
end
