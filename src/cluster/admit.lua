-- admit: ARGV[5] = number of calls (a node sends the admissions of one moment together), then
-- per call: its id, its number of alternatives, and per alternative: k, then k pairs (counter,
-- limit; -1 = unlimited). A counter may repeat inside an alternative (one unit each).
-- Reply: {'lost'} | {'ok', {answer per call}}, each answer {'ok', index, {counter, recorded
-- limit, ...}} | {'full', counter, used, limit}. The calls are decided in order, each against
-- the counts the earlier ones left, all or nothing per alternative, as if admitted one by one.
local m = ARGV[2]
if not alive(m, NOW) then return {'lost'} end
local calls = P .. 'calls:' .. m

-- Parse every call; `union` lists each counter once, to read the counts in one HMGET.
local reqs, ids, union, uorder, pos = {}, {}, {}, {}, 6
for j = 1, tonumber(ARGV[5]) do
  local id, alts = ARGV[pos], {}
  local na = tonumber(ARGV[pos + 1])
  pos = pos + 2
  for a = 1, na do
    local k = tonumber(ARGV[pos])
    -- Limits stay strings as passed: compared with the recorded ones without formatting them.
    local alt = {names = {}, need = {}, limit = {}, order = {}}
    for i = 0, k - 1 do
      local c = ARGV[pos + 1 + 2 * i]
      alt.names[#alt.names + 1] = c
      if alt.need[c] then
        alt.need[c] = alt.need[c] + 1
      else
        alt.need[c], alt.limit[c] = 1, ARGV[pos + 2 + 2 * i]
        alt.order[#alt.order + 1] = c
        if not union[c] then union[c] = true; uorder[#uorder + 1] = c end
      end
    end
    pos = pos + 1 + 2 * k
    alts[a] = alt
  end
  reqs[j], ids[j] = alts, id
end

-- Idempotent by call id: a retry after a lost reply answers the first outcome again.
local priors = redis.call('HMGET', calls, unpack(ids))
local count, seen = {}, {}
if #uorder > 0 then
  local cur = redis.call('HMGET', USED, unpack(uorder))
  local lim = redis.call('HMGET', P .. 'limit', unpack(uorder))
  for i, c in ipairs(uorder) do count[c], seen[c] = tonumber(cur[i]) or 0, lim[i] end
end

local out, taken, torder, records, decided = {}, {}, {}, {}, {}
for j, alts in ipairs(reqs) do
  local id = ids[j]
  if priors[j] then
    out[j] = {'ok', tonumber(split(priors[j])[1]), {}}
  elseif decided[id] then
    out[j] = {'ok', decided[id], {}}
  else
    local refused
    for a, alt in ipairs(alts) do
      refused = nil
      for _, c in ipairs(alt.order) do
        local l = alt.limit[c]
        if l ~= '-1' then
          local max = tonumber(l)
          if count[c] + alt.need[c] > max then refused = {c, count[c], max}; break end
        end
      end
      if not refused then
        -- The limit enforced is the admitting node's; report where the cluster last saw another.
        local diff = {}
        for _, c in ipairs(alt.order) do
          count[c] = count[c] + alt.need[c]
          if taken[c] then taken[c] = taken[c] + alt.need[c]
          else taken[c] = alt.need[c]; torder[#torder + 1] = c end
          if seen[c] ~= alt.limit[c] then
            if seen[c] then diff[#diff + 1] = c; diff[#diff + 1] = seen[c] end
            seen[c] = alt.limit[c]
            redis.call('HSET', P .. 'limit', c, seen[c])
          end
        end
        records[#records + 1] = id
        records[#records + 1] = (a - 1) .. SEP .. table.concat(alt.names, SEP)
        decided[id] = a - 1
        out[j] = {'ok', a - 1, diff}
        break
      end
    end
    if refused then out[j] = {'full', refused[1], refused[2], refused[3]} end
  end
  out[j] = out[j] or {'none'} -- no alternative at all (the client never sends one)
end

-- The writes, once per counter for the whole batch.
for _, c in ipairs(torder) do
  redis.call('HINCRBY', USED, c, taken[c] == 1 and '1' or tostring(taken[c]))
end
if #records > 0 then redis.call('HSET', calls, unpack(records)) end
return {'ok', out}
