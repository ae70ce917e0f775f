-- Stowage on Redis: one page of an index build. Records written or removed since the page
-- was read are skipped (their writes carried the entries); a unique value held by another
-- live record refuses the page, which writes nothing.
--
-- KEYS[1]  the namespace's revisions hash
-- ARGV[1]  key base; ARGV[2] collection; ARGV[3] revision; ARGV[4] now in µs ("" = TIME);
-- ARGV[5]  number of fills, then per fill: id, version, number of indexes, and per index:
--          name, unique (0/1), number of members, members.

local base, c = ARGV[1], ARGV[2]
local revision = redis.call('HGET', KEYS[1], c)
if not revision then return redis.error_reply('STOWAGE_GONE 0') end
if revision ~= ARGV[3] then return redis.error_reply('STOWAGE_STALE 0') end
local now = clock(ARGV[4])
local ent = base .. 'ent:' .. c

local function live(id)
  local packed = redis.call('HGET', ent, id)
  if not packed then return false end
  local e = cmsgpack.unpack(packed)
  local x = e[2]
  return redis.call('EXISTS', base .. 'rec:' .. c .. ':' .. id) == 1 and (x == false or x > now)
end

-- Pass 1: read the fills, check unique values (against the index and the page itself).
local fills, at, claimed = {}, 6, {}
for _ = 1, tonumber(ARGV[5]) do
  local fill = { id = ARGV[at], v = tonumber(ARGV[at + 1]), ix = {} }
  local n = tonumber(ARGV[at + 2])
  at = at + 3
  for _ = 1, n do
    local entry = { ARGV[at], ARGV[at + 1] == '1', {} }
    local m = tonumber(ARGV[at + 2])
    at = at + 3
    for k = 1, m do
      entry[3][k] = ARGV[at]
      at = at + 1
    end
    fill.ix[#fill.ix + 1] = entry
  end
  local packed = redis.call('HGET', ent, fill.id)
  if packed then
    local e = cmsgpack.unpack(packed)
    if e[1] == fill.v then
      fill.e = e
      for _, entry in ipairs(fill.ix) do
        if entry[2] then
          for _, m in ipairs(entry[3]) do
            local k = entry[1] .. '\0' .. m
            local holder = claimed[k] or redis.call('HGET', base .. 'uq:' .. c .. ':' .. entry[1], m)
            if holder and holder ~= fill.id and (claimed[k] or live(holder)) then
              return redis.error_reply('STOWAGE_UNIQUE 0 ' .. entry[1] .. ' ' .. holder)
            end
            claimed[k] = fill.id
          end
        end
      end
      fills[#fills + 1] = fill
    end
  end
end

-- Pass 2: add the members, and record them in each record's entry.
for _, fill in ipairs(fills) do
  local e = fill.e
  for _, entry in ipairs(fill.ix) do
    local key = base .. 'ix:' .. c .. ':' .. entry[1]
    for _, m in ipairs(entry[3]) do
      redis.call('ZADD', key, 0, m .. fill.id)
      if entry[2] then redis.call('HSET', base .. 'uq:' .. c .. ':' .. entry[1], m, fill.id) end
    end
    local replaced = false
    for k, old in ipairs(e[3]) do
      if old[1] == entry[1] then
        e[3][k] = entry
        replaced = true
      end
    end
    if not replaced then e[3][#e[3] + 1] = entry end
  end
  redis.call('HSET', ent, fill.id, cmsgpack.pack(e))
end
return #fills
