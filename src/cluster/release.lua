-- release: ARGV[5..] = calls (one or more; a node sends the releases of one moment together).
-- Reply: {'lost'} (the member's lease ended: the reap frees its units) | {'ok', n} with n the
-- calls that were held (a double release, or a call never admitted, frees nothing).
local m = ARGV[2]
if not alive(m, NOW) then return {'lost'} end
local calls = P .. 'calls:' .. m
local records = redis.call('HMGET', calls, unpack(ARGV, 5))
-- Units per counter over the whole batch: one HINCRBY per distinct counter, not per call.
local held, seen, units, order = {}, {}, {}, {}
for i = 1, #records do
  local r, call = records[i], ARGV[4 + i]
  if r and not seen[call] then -- a call twice in one batch is released once
    seen[call] = true
    held[#held + 1] = call
    local fields = split(r)
    for f = 2, #fields do
      local c = fields[f]
      if units[c] then units[c] = units[c] + 1 else units[c] = 1; order[#order + 1] = c end
    end
  end
end
if #held == 0 then return {'ok', 0} end
redis.call('HDEL', calls, unpack(held))
for _, c in ipairs(order) do decr(c, units[c]) end
return {'ok', #held}
