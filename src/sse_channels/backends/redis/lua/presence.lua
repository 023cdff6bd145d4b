-- Presence: every channel's connections, members and versions, and the processes that
-- hold them, changed atomically. One script, the operation in ARGV[1], keys built from the
-- prefix in ARGV[2] (put a hash tag in the prefix for Redis Cluster):
--
--   <prefix>procs          zset: process -> when its heartbeat expires (ms, Redis time)
--   <prefix>proc:<p>       set: "<channel>\n<connection>" of each connection process p holds
--   <prefix>swept:<p>      set when p's connections were expired (p registers them again)
--   <prefix>c:<channel>    hash: connection -> "<member>\n<metadata JSON>"
--   <prefix>n:<channel>    hash: member -> its connections in the channel
--   <prefix>v:<channel>    hash: member -> the version of its join
--   <prefix>ver:<channel>  the channel's last version (deleted when it empties)
--
-- Versions come from Redis's clock in microseconds (or the last one plus 1, if higher), so
-- they keep growing when a channel empties and its version key goes.
--
-- add <proc> <channel> <connection> <member> <meta> <ttl ms>: the join's version, or 0
--   (not the member's first connection, or the connection is there already).
-- remove <proc> <channel> <connection>: {member, version} (version 0: not its last), or
--   false for an unknown connection.
-- beat <proc> <ttl ms>: 1 if the process was expired meanwhile (register again), else 0.
-- sweep <limit>: {channel, member, version, ...}: the leaves of expired processes.
-- snapshot <channel>: {V, connections (flat hash), join versions (flat hash)}.
local op, prefix = ARGV[1], ARGV[2]

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function next_version(channel)
  local key = prefix .. 'ver:' .. channel
  local v = math.max(tonumber(redis.call('GET', key) or '0') + 1, now_us())
  redis.call('SET', key, string.format('%d', v))
  return v
end

local function drop(channel, connection)
  local ckey = prefix .. 'c:' .. channel
  local value = redis.call('HGET', ckey, connection)
  if not value then
    return false
  end
  local member = string.match(value, '^([^\n]*)')
  redis.call('HDEL', ckey, connection)
  local nkey = prefix .. 'n:' .. channel
  if redis.call('HINCRBY', nkey, member, -1) > 0 then
    return {member, 0}
  end
  redis.call('HDEL', nkey, member)
  redis.call('HDEL', prefix .. 'v:' .. channel, member)
  local v = next_version(channel)
  if redis.call('EXISTS', nkey) == 0 then
    redis.call('DEL', prefix .. 'ver:' .. channel)
  end
  return {member, v}
end

if op == 'add' then
  local proc, channel, connection, member, meta = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
  -- A process expired meanwhile is swept no more; one that is not listed is listed again.
  redis.call('ZADD', prefix .. 'procs', 'NX', math.floor(now_us() / 1000) + tonumber(ARGV[8]), proc)
  local ckey = prefix .. 'c:' .. channel
  if redis.call('HSETNX', ckey, connection, member .. '\n' .. meta) == 0 then
    return 0
  end
  redis.call('SADD', prefix .. 'proc:' .. proc, channel .. '\n' .. connection)
  if redis.call('HINCRBY', prefix .. 'n:' .. channel, member, 1) > 1 then
    return 0
  end
  local v = next_version(channel)
  redis.call('HSET', prefix .. 'v:' .. channel, member, string.format('%d', v))
  return v
elseif op == 'remove' then
  local proc, channel, connection = ARGV[3], ARGV[4], ARGV[5]
  redis.call('SREM', prefix .. 'proc:' .. proc, channel .. '\n' .. connection)
  return drop(channel, connection)
elseif op == 'beat' then
  local proc = ARGV[3]
  redis.call('ZADD', prefix .. 'procs', math.floor(now_us() / 1000) + tonumber(ARGV[4]), proc)
  if redis.call('DEL', prefix .. 'swept:' .. proc) == 1 then
    return 1
  end
  return 0
elseif op == 'sweep' then
  local dead = redis.call('ZRANGEBYSCORE', prefix .. 'procs', '-inf',
    math.floor(now_us() / 1000), 'LIMIT', 0, tonumber(ARGV[3]))
  local leaves = {}
  for _, proc in ipairs(dead) do
    local pkey = prefix .. 'proc:' .. proc
    for _, entry in ipairs(redis.call('SMEMBERS', pkey)) do
      local channel, connection = string.match(entry, '^(.*)\n([^\n]*)$')
      local left = drop(channel, connection)
      if left and left[2] > 0 then
        table.insert(leaves, channel)
        table.insert(leaves, left[1])
        table.insert(leaves, left[2])
      end
    end
    redis.call('DEL', pkey)
    redis.call('ZREM', prefix .. 'procs', proc)
    redis.call('SET', prefix .. 'swept:' .. proc, '1', 'EX', 86400)
  end
  return leaves
elseif op == 'snapshot' then
  local channel = ARGV[3]
  local v = math.max(tonumber(redis.call('GET', prefix .. 'ver:' .. channel) or '0'), now_us())
  return {string.format('%d', v), redis.call('HGETALL', prefix .. 'c:' .. channel),
    redis.call('HGETALL', prefix .. 'v:' .. channel)}
end
return redis.error_reply('unknown presence operation ' .. tostring(op))
