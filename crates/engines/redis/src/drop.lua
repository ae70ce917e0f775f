-- Stowage on Redis: drops a collection with every key it has, in one script (so nothing of
-- it outlives the drop, even if a collection of the same name is made at once after). Its
-- version floor rises to the highest version it gave, and outlives it.
--
-- KEYS[1]  the namespace's revisions hash
-- ARGV[1]  key base; ARGV[2] collection; ARGV[3] change log length; ARGV[4] now ("" = TIME);
-- ARGV[5…] names of the collection's indexes

local base, c = ARGV[1], ARGV[2]
if not redis.call('HGET', KEYS[1], c) then return 0 end
redis.call('HDEL', KEYS[1], c)
redis.call('HDEL', base .. 'specs', c)
-- The highest version it gave: removed records raised the floor already, so the stored
-- entries hold the rest (stores written by earlier builds kept it in `maxver` too).
local ent = base .. 'ent:' .. c
local highest = tonumber(redis.call('HGET', base .. 'maxver', c) or '0')
local cursor = '0'
repeat
  local page = redis.call('HSCAN', ent, cursor, 'COUNT', 1000)
  cursor = page[1]
  for i = 2, #page[2], 2 do
    local v = cmsgpack.unpack(page[2][i])[1]
    if v > highest then highest = v end
  end
until cursor == '0'
if highest > tonumber(redis.call('HGET', base .. 'floors', c) or '0') then
  redis.call('HSET', base .. 'floors', c, int(highest))
end
redis.call('HDEL', base .. 'maxver', c)
redis.call('HDEL', base .. 'bytes', c)
local ids = base .. 'ids:' .. c
while true do
  local page = redis.call('ZRANGE', ids, 0, 999)
  if #page == 0 then break end
  for _, id in ipairs(page) do redis.call('DEL', base .. 'rec:' .. c .. ':' .. id) end
  redis.call('ZREM', ids, unpack(page))
end
-- Records whose hash expired are still in ent: their keys are gone already.
redis.call('DEL', base .. 'ent:' .. c, base .. 'ttl:' .. c)
for i = 5, #ARGV do
  redis.call('DEL', base .. 'ix:' .. c .. ':' .. ARGV[i], base .. 'uq:' .. c .. ':' .. ARGV[i])
end
if watched(base, ARGV[3]) then
  append(base, ARGV[3], { 'op', 'drop', 'collection', c, 'at', int(clock(ARGV[4])) })
end
return 1
