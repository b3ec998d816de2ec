-- heartbeat: ARGV[5] = lease in ms. Renews member ARGV[2]'s lease. Reply: {'ok'} | {'lost'}
-- (expired or unknown, e.g. Redis lost its data: the node must join again under a new epoch; an
-- expired member is never revived, its reap may have begun).
local m = ARGV[2]
if not alive(m, NOW) then return {'lost'} end
redis.call('ZADD', P .. 'nodes', NOW + tonumber(ARGV[5]), m)
return {'ok'}
