-- Stowage on Redis: one atomic batch of writes (see write.rs for the layout and the
-- argument format). Redis runs a script alone and does not undo what a failed script did,
-- so the script first checks every op against the records as the ops before it leave them
-- (pass 1, reads only), and writes only when all pass (pass 2).
--
-- KEYS[1]  the namespace's revisions hash (routes the call to the namespace's slot)
-- ARGV[1]  key base: "<prefix>:{<namespace>}:"
-- ARGV[2]  the caller's now in microseconds, or "" for the server's TIME
-- ARGV[3]  change log length (0: no change feed)
-- ARGV[4]  number of ops, then per op 14 fields and its index entries:
--          collection, revision, id, action (0 check 1 delete 2 put 3 restore 4 mutate),
--          precondition (0 none 1 absent 2 exists 3 version), expected version,
--          body, content type, TTL in microseconds ("" none),
--          restore version, created_at, updated_at, expires_at ("" none),
--          number of indexes; per index: name, unique (0/1), number of members, members.
--          A mutation (see mutate.lua and mutate.rs) holds instead of body … expires_at:
--          its program, its TTL change (k keep, s set, r remove), the TTL (set: the new
--          one; keep: the default of a record it creates), the largest body, whether the
--          collection has indexes (0/1), "", "".
--
-- A record's entry in ent:<c> is { version, expires_at or false, index entries, bytes,
-- revision it was written at }.

local base = ARGV[1]
local server_clock = ARGV[2] == ''
local now = clock(ARGV[2])
local now_s = int(now)
-- A time as text: most are now, which is formatted once.
local function time_s(t) if t == now then return now_s end return int(t) end
local log_length = tonumber(ARGV[3])

local call = redis.call

-- Shared empty values: a script runs thousands of ops, and Lua in Redis pays for every table
-- it makes (they are never changed).
local NO_INDEXES = {}
local ABSENT = { present = false, live = false }

-- Decode the ops. An op keeps where its fields start (`at`); fields that only some ops use
-- (expected version, TTL, restored times) are read from ARGV when needed. Index entries are
-- kept as they are stored: { name, unique, members }.
local ops = {}
local at = 5
for i = 1, tonumber(ARGV[4]) do
  local c, id = ARGV[at], ARGV[at + 2]
  local op = { c = c, r = ARGV[at + 1], id = id, k = c .. '\0' .. id, a = ARGV[at + 3],
    p = ARGV[at + 4], at = at, ix = NO_INDEXES }
  local n = ARGV[at + 13]
  at = at + 14
  if n ~= '0' then
    local ix = {}
    for k = 1, tonumber(n) do
      local last = at + 2 + tonumber(ARGV[at + 2])
      local members = {}
      for j = at + 3, last do members[#members + 1] = ARGV[j] end
      ix[k] = { ARGV[at], ARGV[at + 1] == '1', members }
      at = last + 1
    end
    op.ix = ix
  end
  ops[i] = op
end

local function rec_key(c, id) return base .. 'rec:' .. c .. ':' .. id end
local function ent_key(c) return base .. 'ent:' .. c end
local function ix_key(c, name) return base .. 'ix:' .. c .. ':' .. name end
local function uq_key(c, name) return base .. 'uq:' .. c .. ':' .. name end

-- Calls with many arguments go in chunks: Lua's stack takes a few thousand values at once.
local CHUNK = 1000
local function call_chunked(command, key, args, per)
  for from = 1, #args, CHUNK * per do
    local part = {}
    for k = from, math.min(from + CHUNK * per - 1, #args) do part[#part + 1] = args[k] end
    call(command, key, unpack(part))
  end
end

-- The entries as they were before the script (false: none), by collection and id, read
-- with one HMGET per collection: pass 1 checks against them, pass 2 starts from them.
local loaded = {}
do
  local wanted, seen = {}, {}
  for _, op in ipairs(ops) do
    local k = op.c .. '\0' .. op.id
    if not seen[k] then
      seen[k] = true
      wanted[op.c] = wanted[op.c] or {}
      local list = wanted[op.c]
      list[#list + 1] = op.id
    end
  end
  for c, ids in pairs(wanted) do
    for from = 1, #ids, CHUNK do
      local part = {}
      for k = from, math.min(from + CHUNK - 1, #ids) do part[#part + 1] = ids[k] end
      local packed = call('HMGET', ent_key(c), unpack(part))
      for k, id in ipairs(part) do
        loaded[c .. '\0' .. id] = packed[k] and cmsgpack.unpack(packed[k]) or false
      end
    end
  end
end

-- The stored state of a record: its entry in ent:<c> (version, expiry, index members) and
-- whether its hash is there and live; with its body and content type when `with_body` (a
-- mutation's: one call instead of two).
local function load(c, id, with_body)
  local k = c .. '\0' .. id
  if loaded[k] == nil then
    local packed = call('HGET', ent_key(c), id)
    loaded[k] = packed and cmsgpack.unpack(packed) or false
  end
  local e = loaded[k]
  if not e then
    return ABSENT
  end
  local s = { present = true, v = e[1], x = e[2], ix = e[3], rev = e[5] }
  if e[2] == false or e[2] == nil then s.x = nil end
  local h
  if with_body then
    h = call('HMGET', rec_key(c, id), 'created_at', 'updated_at', 'type', 'body')
    s.ctype, s.body = h[3], h[4]
  else
    h = call('HMGET', rec_key(c, id), 'created_at', 'updated_at')
  end
  s.created = tonumber(h[1])
  s.updated = tonumber(h[2])
  s.live = h[1] ~= false and (s.x == nil or s.x > now)
  return s
end

-- Pass 1: check every op in order against the records as the ops before it leave them.
local revs, floors, state, holders, plan = {}, {}, {}, {}, {}

local function current(c, id, with_body)
  local k = c .. '\0' .. id
  if state[k] == nil then state[k] = load(c, id, with_body) end
  return state[k]
end

local function floor_of(c)
  if floors[c] == nil then
    floors[c] = { v = tonumber(call('HGET', base .. 'floors', c) or '0'), raised = false }
  end
  return floors[c]
end

local function raise(c, v)
  local f = floor_of(c)
  if v and v > f.v then f.v = v; f.raised = true end
end

-- Who holds unique member m of index name now: an id, or false.
local function holder(c, name, m)
  local k = c .. '\0' .. name .. '\0' .. m
  if holders[k] == nil then holders[k] = call('HGET', uq_key(c, name), m) or false end
  return holders[k]
end

local function set_holder(c, name, m, id)
  holders[c .. '\0' .. name .. '\0' .. m] = id
end

-- A record lets its unique members go (it is deleted or rewritten).
local function release(c, id, s)
  if not s.ix then return end
  for _, entry in ipairs(s.ix) do
    if entry[2] then
      for _, m in ipairs(entry[3]) do
        if holder(c, entry[1], m) == id then set_holder(c, entry[1], m, false) end
      end
    end
  end
end

-- The body and content type of a record as the ops before leave it (state s).
local function body_of(c, id, s)
  if s.body == nil then
    local h = call('HMGET', rec_key(c, id), 'type', 'body')
    s.ctype, s.body = h[1], h[2]
  end
  return s.body, s.ctype
end

-- Bodies larger than this are mutated by compare-and-set: parsing them would hold the server.
local NATIVE_BODY = 65536

local function fallback(i) return redis.error_reply('STOWAGE_FALLBACK ' .. (i - 1)) end

-- Mutation op i (a = 4) over state s: its new body, content type, expiry, index entries and
-- values; or an error reply.
local function mutated(i, op, s)
  local at = op.at
  local program = cjson.decode(ARGV[at + 6])
  local creates = false
  for _, m in ipairs(program) do
    if m[1] ~= 'remove' then creates = true end
  end
  if not s.live and not creates then return nil, redis.error_reply('STOWAGE_ABSENT ' .. (i - 1)) end
  -- Entries written at another revision may lack an index built since: Rust recomputes them.
  if s.live and ARGV[at + 10] == '1' and s.rev ~= op.r then return nil, fallback(i) end
  local r = { ix = s.live and s.ix or NO_INDEXES, values = '[]' }
  if #program == 0 then
    r.body, r.ctype = body_of(op.c, op.id, s)
  else
    local body = '{}'
    if s.live then
      local t
      body, t = body_of(op.c, op.id, s)
      if t ~= 'json' or #body > NATIVE_BODY then return nil, fallback(i) end
    end
    local new, values, bound, now_at = mutate_body(body, program)
    if new == nil or (new and #new > tonumber(ARGV[at + 9])) then return nil, fallback(i) end
    if new == false then
      return nil, redis.error_reply('STOWAGE_BOUND ' .. (i - 1) .. ' ' .. bound .. ':' .. values
        .. ' ' .. now_at)
    end
    r.body, r.ctype, r.values = new, 'json', values
  end
  local mode, ttl = ARGV[at + 7], ARGV[at + 8]
  if mode == 's' or (mode == 'k' and not s.live and ttl ~= '') then
    r.x = now + tonumber(ttl)
  elseif mode == 'k' and s.live then
    r.x = s.x
  end
  return r
end

-- The stored times of a live record as the script answers them: version:created:updated:expiry.
local function meta_of(s)
  if not s.live then return '' end
  return int(s.v) .. ':' .. int(s.created) .. ':' .. int(s.updated) .. ':' .. (s.x and int(s.x) or '-')
end

-- Pass 1 leaves on each op that writes what pass 2 needs: `del` (a delete, with `was_live`
-- and the version `v` it removes), or the new version and times (numbers, and as text).
local results = {}
for i, op in ipairs(ops) do
  local c, a, at = op.c, op.a, op.at
  local rev = revs[c]
  if rev == nil then
    rev = call('HGET', KEYS[1], c) or false
    revs[c] = rev
  end
  if not rev then return redis.error_reply('STOWAGE_GONE ' .. (i - 1)) end
  if rev ~= op.r then return redis.error_reply('STOWAGE_STALE ' .. (i - 1)) end
  local s = current(c, op.id, a == '4')
  local live_version = s.live and s.v or nil
  local p = op.p
  local failed = (p == '1' and live_version ~= nil)
    or (p == '2' and live_version == nil)
    or (p == '3' and live_version ~= tonumber(ARGV[at + 5]))
  if failed then
    return redis.error_reply('STOWAGE_PRECONDITION ' .. (i - 1) .. ' '
      .. (live_version and int(live_version) or '-'))
  end
  if a == '0' then
    results[i] = meta_of(s)
  elseif a == '1' then
    results[i] = meta_of(s)
    if s.present then
      raise(c, s.v)
      release(c, op.id, s)
      op.del, op.was_live, op.v = true, s.live, s.v
      plan[#plan + 1] = op
    end
    state[op.k] = ABSENT
  else
    local v, created, updated, x
    if a == '4' then
      local m, refused = mutated(i, op, s)
      if not m then return refused end
      op.body, op.ctype, op.ix, op.values = m.body, m.ctype, m.ix, m.values
      if s.live then
        v, created = s.v + 1, s.created
      else
        v, created = math.max(floor_of(c).v, s.v or 0) + 1, now
      end
      updated, x = now, m.x
    elseif a == '3' then
      v, created, updated = tonumber(ARGV[at + 9]), tonumber(ARGV[at + 10]), tonumber(ARGV[at + 11])
      x = tonumber(ARGV[at + 12])
      if s.present and s.v ~= v then raise(c, s.v) end
    else
      if s.live then
        v, created = s.v + 1, s.created
      else
        v, created = math.max(floor_of(c).v, s.v or 0) + 1, now
      end
      updated = now
      local ttl = ARGV[at + 8]
      if ttl ~= '' then x = now + tonumber(ttl) end
    end
    -- Unique values: a live holder other than this record refuses the op; an expired one
    -- lets the value go.
    release(c, op.id, s)
    for _, entry in ipairs(op.ix) do
      if entry[2] then
        for _, m in ipairs(entry[3]) do
          local h = holder(c, entry[1], m)
          if h and h ~= op.id and current(c, h).live then
            return redis.error_reply('STOWAGE_UNIQUE ' .. (i - 1) .. ' ' .. entry[1] .. ' ' .. h)
          end
          set_holder(c, entry[1], m, op.id)
        end
      end
    end
    if a ~= '4' then op.body, op.ctype = ARGV[at + 6], ARGV[at + 7] end
    state[op.k] = {
      present = true, v = v, x = x, ix = op.ix, created = created, updated = updated,
      live = x == nil or x > now, body = op.body, ctype = op.ctype, rev = op.r,
    }
    op.v, op.created, op.updated, op.x = v, created, updated, x
    op.sv, op.sc, op.su, op.sx = int(v), time_s(created), time_s(updated), x and int(x) or nil
    plan[#plan + 1] = op
    results[i] = op.sv .. ':' .. op.sc .. ':' .. op.su .. ':' .. (op.sx or '-')
    if a == '4' then results[i] = results[i] .. '\n' .. op.values end
  end
end

-- Pass 2: every op passed; write.
local logged = watched(base, log_length)
local events = {}

-- Bytes of ids and bodies per collection, for stats.
local sizes = {}
local function grow(c, n) sizes[c] = (sizes[c] or 0) + n end

-- What is stored now, as pass 2 goes: an entry, or false.
local stored = {}
local function stored_of(c, id)
  local k = c .. '\0' .. id
  if stored[k] == nil then stored[k] = loaded[k] or false end
  return stored[k]
end

-- Removes what the stored record holds: its index members, unique claims and size.
local function unindex(c, id, e)
  grow(c, -(e[4] or 0))
  for _, entry in ipairs(e[3]) do
    local key = ix_key(c, entry[1])
    for _, m in ipairs(entry[3]) do
      call('ZREM', key, m .. id)
      if entry[2] and call('HGET', uq_key(c, entry[1]), m) == id then
        call('HDEL', uq_key(c, entry[1]), m)
      end
    end
  end
end

-- Keys of records touched, for the bookkeeping done once per collection at the end.
local touched = {}

for _, op in ipairs(plan) do
  local c, id, k = op.c, op.id, op.k
  local rec = rec_key(c, id)
  local old = stored_of(c, id)
  local had_ttl = old and old[2] ~= false and old[2] ~= nil
  if old then unindex(c, id, old) end
  touched[k] = op
  if op.del then
    call('DEL', rec)
    stored[k] = false
    if logged and op.was_live then events[#events + 1] = { 'delete', c, id, int(op.v) } end
  else
    local body = op.body
    if op.x then
      call('HSET', rec, 'version', op.sv, 'created_at', op.sc, 'updated_at', op.su,
        'type', op.ctype, 'body', body, 'expires_at', op.sx)
      -- The hash expires by itself where the server's clock decides.
      if server_clock then call('PEXPIREAT', rec, int(math.floor(op.x / 1000))) end
    else
      call('HSET', rec, 'version', op.sv, 'created_at', op.sc, 'updated_at', op.su,
        'type', op.ctype, 'body', body)
      if had_ttl then
        call('HDEL', rec, 'expires_at')
        call('PERSIST', rec)
      end
    end
    for _, entry in ipairs(op.ix) do
      local key = ix_key(c, entry[1])
      for _, m in ipairs(entry[3]) do
        call('ZADD', key, 0, m .. id)
        if entry[2] then call('HSET', uq_key(c, entry[1]), m, id) end
      end
    end
    local size = #id + #body
    grow(c, size)
    stored[k] = { op.v, op.x or false, op.ix, size, op.r }
    if logged then events[#events + 1] = { 'put', c, id, op.sv } end
  end
end

-- Per collection, from where each touched record started to where it ended: its entry,
-- its place in the ids set and in the TTL set, each in one call (or a few, chunked).
local per = {}
for k, t in pairs(touched) do
  local before, after = loaded[k] or false, stored[k] or false
  local p = per[t.c]
  if not p then
    p = { ent_set = {}, ent_del = {}, ids_add = {}, ids_rem = {}, ttl_add = {}, ttl_rem = {} }
    per[t.c] = p
  end
  if after then
    p.ent_set[#p.ent_set + 1] = t.id
    p.ent_set[#p.ent_set + 1] = cmsgpack.pack(after)
    if not before then
      p.ids_add[#p.ids_add + 1] = '0'
      p.ids_add[#p.ids_add + 1] = t.id
    end
  else
    if before then
      p.ent_del[#p.ent_del + 1] = t.id
      p.ids_rem[#p.ids_rem + 1] = t.id
    end
  end
  local x_after = after and after[2] or false
  local x_before = before and before[2] or false
  if x_after then
    p.ttl_add[#p.ttl_add + 1] = int(x_after)
    p.ttl_add[#p.ttl_add + 1] = t.id
  elseif x_before then
    p.ttl_rem[#p.ttl_rem + 1] = t.id
  end
end
for c, p in pairs(per) do
  call_chunked('HSET', ent_key(c), p.ent_set, 2)
  call_chunked('HDEL', ent_key(c), p.ent_del, 1)
  call_chunked('ZADD', base .. 'ids:' .. c, p.ids_add, 2)
  call_chunked('ZREM', base .. 'ids:' .. c, p.ids_rem, 1)
  call_chunked('ZADD', base .. 'ttl:' .. c, p.ttl_add, 2)
  call_chunked('ZREM', base .. 'ttl:' .. c, p.ttl_rem, 1)
end

for c, f in pairs(floors) do
  if f.raised then call('HSET', base .. 'floors', c, int(f.v)) end
end

for c, n in pairs(sizes) do
  if n ~= 0 then call('HINCRBY', base .. 'bytes', c, int(n)) end
end

if logged then
  for _, e in ipairs(events) do
    append(base, log_length,
      { 'op', e[1], 'collection', e[2], 'id', e[3], 'version', e[4], 'at', now_s })
  end
end

return results
