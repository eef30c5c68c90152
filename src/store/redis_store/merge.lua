#!lua name=sra_milter_2
local function merge(keys, args)
  local h = keys[1]
  local new = redis.call('EXISTS', h) == 0
  local first = tonumber(args[1])
  if first ~= 0 then
    local f = tonumber(redis.call('HGET', h, 'f') or '0')
    if f == 0 or first < f then redis.call('HSET', h, 'f', args[1]) end
  end
  local last = tonumber(args[2])
  local l = tonumber(redis.call('HGET', h, 'l') or '0')
  if last >= l then
    if args[3] ~= '' then redis.call('HSET', h, 'b', args[3]) end
    redis.call('HSET', h, 'l', args[2])
  end
  local k = tonumber(args[4])
  local i = 6
  for _ = 1, tonumber(args[5]) do
    redis.call('HINCRBY', h, args[i], args[i + 1])
    i = i + 2
  end
  for s = 2, #keys do
    local m = tonumber(args[i])
    i = i + 1
    if m > 0 then
      local za = {}
      for _ = 1, m do
        za[#za + 1] = args[i]
        za[#za + 1] = args[i + 1]
        i = i + 2
      end
      redis.call('ZADD', keys[s], unpack(za))
      redis.call('ZREMRANGEBYRANK', keys[s], k, -1)
    end
  end
  if new then return 1 end
  return 0
end
redis.register_function('sra_merge_2', merge)

-- One record at once: its hash (flat field/value list), then each set's
-- members in score order as one string, separated by spaces (a set holds
-- up to 256 hashes: one reply element instead of one each).
-- KEYS[1] = hash, KEYS[2..] = the sets.
local function read(keys, args)
  local out = { redis.call('HGETALL', keys[1]) }
  for s = 2, #keys do
    out[#out + 1] = table.concat(redis.call('ZRANGE', keys[s], 0, -1), ' ')
  end
  return out
end
redis.register_function{function_name = 'sra_read_2', callback = read, flags = { 'no-writes' }}
