-- release: ARGV[5] = call. Reply: {'lost'} (the member's lease ended: the reap frees its units)
-- | {'ok', 1} released | {'ok', 0} not held (a double release, or never admitted).
local m = ARGV[2]
if not alive(m, NOW) then return {'lost'} end
local calls = P .. 'calls:' .. m
local record = redis.call('HGET', calls, ARGV[5])
if not record then return {'ok', 0} end
local fields = split(record)
for i = 2, #fields do decr(fields[i]) end
redis.call('HDEL', calls, ARGV[5])
return {'ok', 1}
