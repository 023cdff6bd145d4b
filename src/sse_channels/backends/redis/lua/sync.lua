-- Reads (and if need be begins) the epoch and the counter.
--
-- KEYS: epoch, counter. ARGV: candidate label, the epoch we use, the highest n we saw in it.
-- Returns {epoch, counter}; starts a new epoch (and a counter with it) if either is
-- missing, or if the counter went backwards (a failover to a replica that had not received
-- our latest events). The publish script likewise starts one when the counter is missing.
local raw = redis.call('GET', KEYS[2])
local counter = tonumber(raw or '0')
local epoch = redis.call('GET', KEYS[1])
if (not epoch) or (not raw) or (epoch == ARGV[2] and counter < tonumber(ARGV[3])) then
  epoch = ARGV[1] .. ':' .. string.format('%d', counter)
  redis.call('SET', KEYS[1], epoch)
  -- never 0, so that a send that finds the counter at 1 knows it was missing
  redis.call('SET', KEYS[2], math.max(counter, 1))
end
return {epoch, counter}
