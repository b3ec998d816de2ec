-- join: ARGV[2] = node, ARGV[5] = lease in ms. Registers a new epoch of the node. Reply:
-- {'ok', epoch}. The node's older epochs belong to a process that is gone (node names are unique
-- per process), so their leases end now and the reap frees their units first (lowest score).
local node = ARGV[2]
local epoch = redis.call('HINCRBY', P .. 'epoch', node, 1)
local m = node .. '#' .. epoch
local mine = node .. '#'
for _, other in ipairs(redis.call('ZRANGE', P .. 'nodes', 0, -1)) do
  if string.sub(other, 1, #mine) == mine and other ~= m then
    redis.call('ZADD', P .. 'nodes', 0, other)
  end
end
redis.call('ZADD', P .. 'nodes', NOW + tonumber(ARGV[5]), m)
return {'ok', epoch}
