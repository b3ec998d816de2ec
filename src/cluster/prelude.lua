-- callgate cluster counters: the prelude of every script (scripts.rs appends one body to it).
--
-- Keys, all under one hash tag P = "{cluster}:" so Redis Cluster keeps them in one slot:
--   P.."used"         hash  counter -> units held cluster-wide
--   P.."limit"        hash  counter -> the limit last passed with an admission (disagreement check)
--   P.."nodes"        zset  member ("node#epoch") scored by its lease expiry, ms
--   P.."epoch"        hash  node -> last epoch handed out
--   P.."reap"         hash  member -> HSCAN cursor of a dead member being freed
--   P.."calls:"..m    hash  call -> "index\0counter\0counter..." (the units that call holds)
-- A member's units are its calls' records: no per-member count to keep in step on every admission
-- and release (it doubled each script's writes). Per-member keys are derived, not declared: they
-- hash to the same slot through the tag.
--
-- ARGV[1] = P, ARGV[2] = member or node, ARGV[3] = now in ms (0: read Redis TIME, one clock for
-- every node), ARGV[4] = reap budget; the body's own arguments follow.

local P = ARGV[1]
local USED = P .. 'used' -- built once: a concatenation in a loop makes a string per pass
local SEP = '\0'

local function now_ms(arg)
  local n = tonumber(arg)
  if n and n > 0 then return n end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Splits a stored call record on SEP; the first field is the alternative's index.
local function split(s)
  local out, i = {}, 1
  while true do
    local j = string.find(s, SEP, i, true)
    if not j then out[#out + 1] = string.sub(s, i); return out end
    out[#out + 1] = string.sub(s, i, j - 1)
    i = j + 1
  end
end

-- Numbers go to redis.call as strings: a Lua number is formatted with printf ("%.17g"), which
-- was the largest single cost of a script run.

-- Takes `n` units (one when nil) of counter `field` back. A count that reaches 0 is removed (the
-- hash stays as small as the calls in progress); one that went below 0 is kept, so the bug shows
-- in `/counters` and in the property test.
local function decr(field, n)
  local by = (n == nil or n == 1) and '-1' or ('-' .. n)
  if redis.call('HINCRBY', USED, field, by) == 0 then redis.call('HDEL', USED, field) end
end

-- Frees the units of at most about `budget` calls of the first member whose lease ended before
-- `now`. Bounded work per script run is what makes a dead node's units come back with no reaper
-- process: every admission, release and heartbeat of every node does a little of it. A dead
-- member never gains calls (every script refuses an expired member), so one HSCAN pass from the
-- stored cursor visits all of them.
local function reap(now, budget)
  local dead = redis.call('ZRANGEBYSCORE', P .. 'nodes', '-inf', '(' .. now, 'LIMIT', 0, 1)
  if #dead == 0 then return end
  local m = dead[1]
  local calls = P .. 'calls:' .. m
  local cursor = redis.call('HGET', P .. 'reap', m) or '0'
  local scan = redis.call('HSCAN', calls, cursor, 'COUNT', budget)
  local kv = scan[2]
  for i = 1, #kv, 2 do
    local fields = split(kv[i + 1])
    for f = 2, #fields do decr(fields[f]) end
    redis.call('HDEL', calls, kv[i])
  end
  if scan[1] ~= '0' then
    redis.call('HSET', P .. 'reap', m, scan[1])
  elseif redis.call('EXISTS', calls) == 0 then
    redis.call('HDEL', P .. 'reap', m)
    redis.call('ZREM', P .. 'nodes', m)
  else
    redis.call('HDEL', P .. 'reap', m)
  end
end

-- Whether member m holds a lease that has not ended at `now`.
local function alive(m, now)
  local score = redis.call('ZSCORE', P .. 'nodes', m)
  return score and tonumber(score) >= now
end

-- Adds one call's units to member m with no limit check (republish: those calls exist).
local function hold(m, call, index, counters)
  for _, c in ipairs(counters) do redis.call('HINCRBY', USED, c, '1') end
  redis.call('HSET', P .. 'calls:' .. m, call, index .. SEP .. table.concat(counters, SEP))
end

local NOW = now_ms(ARGV[3])
reap(NOW, tonumber(ARGV[4]))
