-- Reads a resume's range of one stream.
--
-- KEYS: the stream. ARGV: after ("(<n>-0"), through ("<n>-0"), past through ("(<n>-0").
-- Returns {entries in the range, the first entry past it, whether the stream exists, the n
-- of the newest entry beyond the newest @MAXLEN@ (0 if none)}: approximate trimming keeps
-- a few more than maxlen, but a resume reaches back exactly maxlen events.
--
-- Filled in per backend (see _scripts.py): @MAXLEN@.
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2])
local following = redis.call('XRANGE', KEYS[1], ARGV[3], '+', 'COUNT', 1)
local cutoff = 0
local excess = redis.call('XLEN', KEYS[1]) - @MAXLEN@
if excess > 0 then
  local old = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  cutoff = tonumber(string.match(old[excess][1], '^(%d+)'))
end
return {entries, following, redis.call('EXISTS', KEYS[1]), cutoff}
