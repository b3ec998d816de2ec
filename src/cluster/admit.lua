-- admit: ARGV[5] = call, ARGV[6] = number of alternatives, then per alternative: k, then k pairs
-- (counter, limit; -1 = unlimited). A counter may repeat inside an alternative (one unit each).
-- Reply: {'lost'} | {'ok', index, {counter, recorded limit, ...}} | {'full', counter, used, limit}.
local m = ARGV[2]
if not alive(m, NOW) then return {'lost'} end
local call = ARGV[5]
-- Idempotent by call id: a retry after a lost reply answers the first outcome again.
local prior = redis.call('HGET', P .. 'calls:' .. m, call)
if prior then return {'ok', tonumber(split(prior)[1]), {}} end
local pos, refused = 7, nil
for a = 0, tonumber(ARGV[6]) - 1 do
  local k = tonumber(ARGV[pos])
  -- Limits stay strings as passed: compared with the recorded ones without formatting them.
  local names, need, limit, order = {}, {}, {}, {}
  for i = 0, k - 1 do
    local c = ARGV[pos + 1 + 2 * i]
    names[#names + 1] = c
    if need[c] then
      need[c] = need[c] + 1
    else
      need[c], limit[c] = 1, ARGV[pos + 2 + 2 * i]
      order[#order + 1] = c
    end
  end
  pos = pos + 1 + 2 * k
  -- Takes the units first (HINCRBY answers the new count: no read, no parsing of counts), then
  -- gives them back if a counter went past its limit.
  refused = nil
  local taken = 0
  for i, c in ipairs(order) do
    local n = redis.call('HINCRBY', USED, c, need[c] == 1 and '1' or tostring(need[c]))
    taken = i
    if limit[c] ~= '-1' then
      local max = tonumber(limit[c])
      if n > max then refused = {c, n - need[c], max}; break end
    end
  end
  if refused then
    for i = 1, taken do decr(order[i], need[order[i]]) end
  else
    record(m, call, a, names)
    -- The limit enforced is the admitting node's; report where the cluster last saw another.
    local diff = {}
    if #order > 0 then
      local seen = redis.call('HMGET', P .. 'limit', unpack(order))
      for i, c in ipairs(order) do
        if seen[i] ~= limit[c] then
          if seen[i] then diff[#diff + 1] = c; diff[#diff + 1] = seen[i] end
          redis.call('HSET', P .. 'limit', c, limit[c])
        end
      end
    end
    return {'ok', a, diff}
  end
end
return {'full', refused[1], refused[2], refused[3]}
