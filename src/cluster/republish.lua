-- republish: ARGV[5] = number of calls, then per call: id, index, k, k counters. Counts the calls
-- the node holds in memory that Redis does not know (after a data loss or a new epoch), with no
-- limit check: those calls exist. Reply: {'lost'} | {'ok', calls added}.
local m = ARGV[2]
if not alive(m, NOW) then return {'lost'} end
local calls = P .. 'calls:' .. m
local pos, added = 6, 0
for _ = 1, tonumber(ARGV[5]) do
  local call, index, k = ARGV[pos], ARGV[pos + 1], tonumber(ARGV[pos + 2])
  if redis.call('HEXISTS', calls, call) == 0 then
    local counters = {}
    for i = 1, k do counters[i] = ARGV[pos + 2 + i] end
    hold(m, call, index, counters)
    added = added + 1
  end
  pos = pos + 3 + k
end
return {'ok', added}
