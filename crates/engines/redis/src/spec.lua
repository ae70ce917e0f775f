-- Stowage on Redis: a collection's spec changes as a compare-and-set on its revision (see
-- catalog.rs). Indexes dropped by the change lose their sorted set and unique hash here;
-- indexes added are filled by the index build, a page at a time.
--
-- KEYS[1]  the namespace's revisions hash
-- ARGV[1]  key base; ARGV[2] collection; ARGV[3] expected revision ("" = must not exist);
-- ARGV[4]  the stored spec (JSON); ARGV[5] change log length; ARGV[6] now in µs ("" = TIME);
-- ARGV[7…] names of dropped indexes

local base, c = ARGV[1], ARGV[2]
local current = redis.call('HGET', KEYS[1], c)
if (current or '') ~= ARGV[3] then
  return redis.error_reply('STOWAGE_SPEC_CONFLICT ' .. (current or '-'))
end
local revision = redis.call('INCR', base .. 'revision')
redis.call('HSET', KEYS[1], c, revision)
redis.call('HSET', base .. 'specs', c, ARGV[4])
for i = 7, #ARGV do
  redis.call('DEL', base .. 'ix:' .. c .. ':' .. ARGV[i], base .. 'uq:' .. c .. ':' .. ARGV[i])
end
if watched(base, ARGV[5]) then
  append(base, ARGV[5], { 'op', 'spec', 'collection', c, 'at', int(clock(ARGV[6])) })
end
return revision
