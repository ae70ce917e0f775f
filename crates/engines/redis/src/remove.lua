-- Stowage on Redis: removes records by id in one script — delete by query or prefix, and
-- the purge of expired records — with their index members, unique claims, TTL entries and
-- sizes; raises the version floor; logs one bulk event.
--
-- KEYS[1]  the namespace's revisions hash
-- ARGV[1]  key base; ARGV[2] collection; ARGV[3] the revision the request was prepared with
--          ("" = any); ARGV[4] now in µs ("" = TIME); ARGV[5] change log length;
-- ARGV[6]  the event: delete_where, delete_prefix or purge; ARGV[7] its id (the prefix) or "";
-- ARGV[8]  "1" to remove only records expired at now (the purge), "0" for any;
-- ARGV[9…] pairs: id, the version it was matched at ("" = any)
-- Returns {records removed, live records removed}.

local base, c = ARGV[1], ARGV[2]
local revision = redis.call('HGET', KEYS[1], c)
if not revision then return redis.error_reply('STOWAGE_GONE 0') end
if ARGV[3] ~= '' and revision ~= ARGV[3] then return redis.error_reply('STOWAGE_STALE 0') end
local now = clock(ARGV[4])
local only_expired = ARGV[8] == '1'
local ent = base .. 'ent:' .. c
local removed, live_removed, size, highest = 0, 0, 0, 0
for i = 9, #ARGV, 2 do
  local id, version = ARGV[i], ARGV[i + 1]
  local packed = redis.call('HGET', ent, id)
  if packed then
    local e = cmsgpack.unpack(packed)
    local rec = base .. 'rec:' .. c .. ':' .. id
    local x = e[2]
    if x == false then x = nil end
    local live = redis.call('EXISTS', rec) == 1 and (x == nil or x > now)
    local wanted = (version == '' or tonumber(version) == e[1]) and not (only_expired and live)
    if wanted then
      for _, entry in ipairs(e[3]) do
        local key = base .. 'ix:' .. c .. ':' .. entry[1]
        for _, m in ipairs(entry[3]) do
          redis.call('ZREM', key, m .. id)
          local uq = base .. 'uq:' .. c .. ':' .. entry[1]
          if entry[2] and redis.call('HGET', uq, m) == id then redis.call('HDEL', uq, m) end
        end
      end
      redis.call('DEL', rec)
      redis.call('HDEL', ent, id)
      redis.call('ZREM', base .. 'ids:' .. c, id)
      redis.call('ZREM', base .. 'ttl:' .. c, id)
      size = size + (e[4] or 0)
      if e[1] > highest then highest = e[1] end
      removed = removed + 1
      if live then live_removed = live_removed + 1 end
    end
  end
end
if size > 0 then redis.call('HINCRBY', base .. 'bytes', c, int(-size)) end
if highest > tonumber(redis.call('HGET', base .. 'floors', c) or '0') then
  redis.call('HSET', base .. 'floors', c, int(highest))
end
local count = live_removed
if only_expired then count = removed end
if count > 0 and watched(base, ARGV[5]) then
  local fields = { 'op', ARGV[6], 'count', int(count), 'at', int(now) }
  if ARGV[6] ~= 'purge' then
    fields[#fields + 1] = 'collection'
    fields[#fields + 1] = c
  end
  if ARGV[7] ~= '' then
    fields[#fields + 1] = 'id'
    fields[#fields + 1] = ARGV[7]
  end
  append(base, ARGV[5], fields)
end
return { removed, live_removed }
