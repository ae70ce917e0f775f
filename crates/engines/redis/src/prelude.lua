-- Stowage on Redis: what every script shares; prepended to each when it is loaded.

-- Lua numbers are doubles: exact for versions and microsecond times (below 2^53), but Redis
-- turns a number argument into text with 14 digits. Every number sent to Redis, or
-- returned, goes through int() first.
local function int(n) return string.format('%d', n) end

-- Now in microseconds: `arg` (the caller's clock), or the server's TIME when it is "".
local function clock(arg)
  if arg == '' then
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return tonumber(arg)
end

-- Whether the namespace at `base` logs its changes: someone has watched it (`feedseq`
-- exists) and the log keeps something (`length` > 0).
local function watched(base, length)
  return tonumber(length) > 0 and redis.call('EXISTS', base .. 'feedseq') == 1
end

-- Appends one event (its field/value pairs) to the namespace's stream, numbered in commit
-- order; the stream keeps about `length` events.
local function append(base, length, fields)
  local token = redis.call('INCR', base .. 'feedseq')
  redis.call('XADD', base .. 'feed', 'MAXLEN', '~', int(length), int(token) .. '-1',
    unpack(fields))
end

