-- Stores one event: increments the store-wide counter and adds the entry "<n>-0".
--
-- KEYS: epoch, counter, stream, registry, last (with TTL only: each channel's newest n, so
-- that a stream created again after it expired records what came before it).
-- ARGV: candidate label, token, retry flag ("1": an earlier attempt may have been stored),
-- the header's optional lines, the data, the epoch the sender believes current.
-- Returns n, or {epoch, n} when the event began a new epoch, was found by a retry, or the
-- epoch is not the one the sender believes current.
--
-- An entry is one field: its name is the header ("<previous n>\n<token>" and the optional
-- lines "\ne<event type>", "\nr<retry>", "\ni<custom id>"), its value the data; readers
-- parse two strings per entry. With the retry flag, an entry that carries the token (an
-- attempt whose reply was lost) is returned instead of storing the event a second time.
--
-- Filled in per backend (see _scripts.py): @MAXLEN@, @TTL@ (milliseconds, 0: none),
-- @WINDOW@ (entries a retry looks back through) and @OFFSET@ (where the channel name
-- starts in the stream key).
if ARGV[3] == '1' then
  local epoch = redis.call('GET', KEYS[1])
  if epoch then
    local recent = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', @WINDOW@)
    for _, entry in ipairs(recent) do
      if string.match(entry[2][1], '^%d+\n([^\n]*)') == ARGV[2] then
        return {epoch, tonumber(string.match(entry[1], '^(%d+)'))}
      end
    end
  end
end
local n = redis.call('INCR', KEYS[2])
local epoch = false
if n == 1 then
  -- The counter was missing (the sync script never leaves it at 0): Redis is new, or
  -- lost everything. A new epoch begins with this event.
  epoch = ARGV[1] .. ':0'
  redis.call('SET', KEYS[1], epoch)
end
local id = string.format('%d-0', n)
local prev = 0
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)[1]
if last then
  prev = tonumber(string.match(last[1], '^(%d+)'))
  if prev >= n then
    -- left over from before the counter was lost: its entries belong to no epoch now
    redis.call('DEL', KEYS[3])
    prev = 0
    last = nil
  end
end
if (not last) and @TTL@ > 0 then
  -- the stream may have expired: its first entry then says what came before it
  local before = tonumber(redis.call('HGET', KEYS[5], string.sub(KEYS[3], @OFFSET@)) or '0')
  if before < n then
    prev = before
  end
end
local tail = '\n' .. ARGV[2] .. ARGV[4]
local added = redis.pcall('XADD', KEYS[3], 'MAXLEN', '~', @MAXLEN@, id, prev .. tail, ARGV[5])
if type(added) == 'table' and added.err then
  -- an emptied stream that remembers a higher last id
  redis.call('DEL', KEYS[3])
  last = nil
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', @MAXLEN@, id, '0' .. tail, ARGV[5])
end
if @TTL@ > 0 then
  redis.call('PEXPIRE', KEYS[3], @TTL@)
  redis.call('HSET', KEYS[5], string.sub(KEYS[3], @OFFSET@), n)
end
if not last then
  redis.call('XADD', KEYS[4], id, 'c', string.sub(KEYS[3], @OFFSET@))
end
if epoch then
  return {epoch, n}
end
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[6] then
  -- another process began a new epoch that this sender has not seen yet
  return {current, n}
end
return n
