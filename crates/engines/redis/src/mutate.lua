-- Stowage on Redis: mutations applied to JSON bodies inside the write script (see mutate.rs
-- for which ones come here and the program's format).
--
-- The body is parsed into a tree whose scalars keep their text, edited, and written back
-- compact. That equals, byte for byte, what Rust's `MutateAction::apply` writes (serde_json,
-- keys in order) only when the body is already in serde_json's form, so the parser takes
-- nothing else: no whitespace, no duplicate key, strings escaped as serde_json escapes them,
-- integers of at most 18 digits, decimals of at most 15 significant digits as ryu writes
-- them. Anything else, and every refusal but a bound, answers FALLBACK: the caller then
-- applies the batch by compare-and-set, where Rust decides — one implementation of the
-- rules, and of their error messages.
--
-- A node is { 'o', keys, values } (keys as stored: the text between the quotes), { 'a',
-- items } or { 's', text } (a scalar as its JSON text).

local byte, sub, find = string.byte, string.sub, string.find

-- Numbers in Lua are doubles: integers are exact below 2^53.
local EXACT = 9007199254740992

-- The short escapes serde_json writes: " \ b f n r t.
local SHORT_ESCAPE = { [34] = true, [92] = true, [98] = true, [102] = true, [110] = true,
  [114] = true, [116] = true }
-- Control characters serde_json writes in their short form, never as \u00XX.
local HAS_SHORT = { [8] = true, [9] = true, [10] = true, [12] = true, [13] = true }

-- Where the string opened at i ends (its closing quote), or nil when it is not as serde_json
-- writes it.
local function string_end(s, i)
  local j = i + 1
  while true do
    local k = find(s, '["\\%z\1-\31]', j)
    if not k then return nil end
    local b = byte(s, k)
    if b == 34 then return k end
    if b ~= 92 then return nil end
    local e = byte(s, k + 1)
    if SHORT_ESCAPE[e] then
      j = k + 2
    elseif e == 117 then
      local hex = sub(s, k + 2, k + 5)
      if not find(hex, '^00[01][0-9a-f]$') or HAS_SHORT[tonumber(hex, 16)] then return nil end
      j = k + 6
    else
      return nil
    end
  end
end

-- Whether a number's text is as serde_json writes it (see the top of the file).
local function canonical_number(t)
  local int, frac = t:match('^%-?(%d+)(.*)$')
  if not int or (#int > 1 and byte(int, 1) == 48) then return false end
  if frac == '' then return #int <= 18 and t ~= '-0' end
  frac = frac:match('^%.(%d+)$')
  if not frac then return false end
  if frac == '0' then return #int <= 15 end
  if byte(frac, #frac) == 48 then return false end
  if int ~= '0' then return #int + #frac <= 15 end
  -- 0.000ddd: ryu writes up to four zeros after the point before it turns to 1e-5.
  local zeros = #frac:match('^0*')
  return zeros <= 4 and #frac - zeros <= 15
end

local parse_value

local function parse_object(s, i)
  local keys, vals, seen = {}, {}, {}
  local j = i + 1
  if byte(s, j) == 125 then return { 'o', keys, vals }, j + 1 end
  while true do
    if byte(s, j) ~= 34 then return nil end
    local q = string_end(s, j)
    if not q or byte(s, q + 1) ~= 58 then return nil end
    local key = sub(s, j + 1, q - 1)
    if seen[key] then return nil end
    seen[key] = true
    local v, after = parse_value(s, q + 2)
    if not v then return nil end
    keys[#keys + 1], vals[#vals + 1] = key, v
    local b = byte(s, after)
    if b == 125 then return { 'o', keys, vals }, after + 1 end
    if b ~= 44 then return nil end
    j = after + 1
  end
end

local function parse_array(s, i)
  local items = {}
  local j = i + 1
  if byte(s, j) == 93 then return { 'a', items }, j + 1 end
  while true do
    local v, after = parse_value(s, j)
    if not v then return nil end
    items[#items + 1] = v
    local b = byte(s, after)
    if b == 93 then return { 'a', items }, after + 1 end
    if b ~= 44 then return nil end
    j = after + 1
  end
end

local LITERALS = { [110] = 'null', [116] = 'true', [102] = 'false' }

-- The value starting at i and where it ends (one past), or nil.
parse_value = function(s, i)
  local b = byte(s, i)
  if b == 123 then return parse_object(s, i) end
  if b == 91 then return parse_array(s, i) end
  if b == 34 then
    local q = string_end(s, i)
    if not q then return nil end
    return { 's', sub(s, i, q) }, q + 1
  end
  local word = LITERALS[b]
  if word then
    if sub(s, i, i + #word - 1) ~= word then return nil end
    return { 's', word }, i + #word
  end
  local _, e = find(s, '^%-?[%d.]+', i)
  if not e then return nil end
  local t = sub(s, i, e)
  if not canonical_number(t) then return nil end
  return { 's', t }, e + 1
end

-- The whole of `s` as one value, or nil.
local function parse(s)
  local ok, v, after = pcall(parse_value, s, 1)
  if ok and v and after == #s + 1 then return v end
  return nil
end

local function encode_into(node, out)
  local t = node[1]
  if t == 's' then
    out[#out + 1] = node[2]
  elseif t == 'o' then
    out[#out + 1] = '{'
    local keys, vals = node[2], node[3]
    for k = 1, #keys do
      if k > 1 then out[#out + 1] = ',' end
      out[#out + 1] = '"' .. keys[k] .. '":'
      encode_into(vals[k], out)
    end
    out[#out + 1] = '}'
  else
    out[#out + 1] = '['
    for k, item in ipairs(node[2]) do
      if k > 1 then out[#out + 1] = ',' end
      encode_into(item, out)
    end
    out[#out + 1] = ']'
  end
end

local function encode(node)
  local out = {}
  encode_into(node, out)
  return table.concat(out)
end

local function key_at(obj, key)
  local keys = obj[2]
  for k = 1, #keys do
    if keys[k] == key then return k end
  end
  return nil
end

-- An array index as Rust takes it: canonical digits naming an element, or nil.
local function index_at(arr, token)
  if token ~= '0' and not find(token, '^[1-9]%d*$') then return nil end
  local n = tonumber(token) + 1
  if n > #arr[2] then return nil end
  return n
end

-- An integer scalar's value when exact in a double, or nil (null and absent are 0).
local function integer_of(node)
  if node == nil or (node[1] == 's' and node[2] == 'null') then return 0 end
  if node[1] ~= 's' or not find(node[2], '^%-?%d+$') then return nil end
  local n = tonumber(node[2])
  if math.abs(n) >= EXACT then return nil end
  return n
end

-- The container the path's last token indexes (making objects on the way when `create`);
-- false when a parent is missing and nothing is created; nil to fall back.
local function parent_of(root, tokens, create)
  local at = root
  for i = 1, #tokens - 1 do
    local token = tokens[i]
    if at[1] == 'o' then
      local k = key_at(at, token)
      if k then
        at = at[3][k]
      elseif create then
        local made = { 'o', {}, {} }
        at[2][#at[2] + 1], at[3][#at[3] + 1] = token, made
        at = made
      else
        return false
      end
    elseif at[1] == 'a' then
      local n = index_at(at, token)
      if not n then return nil end
      at = at[2][n]
    else
      return nil
    end
  end
  if at[1] == 's' then return nil end
  return at
end

-- Applies mutation m ({ op, path, tokens, value, min, max, keep_last }) to the tree.
-- Returns true, or nil to fall back, or 'min'/'max' and the current value's text when a
-- bound refuses it.
local function apply_one(root, m)
  local op, tokens = m[1], m[3]
  local parent = parent_of(root, tokens, op ~= 'remove')
  if parent == false then return true end
  if not parent then return nil end
  local last = tokens[#tokens]
  local slot
  if parent[1] == 'o' then
    slot = key_at(parent, last)
  else
    slot = index_at(parent, last)
    if not slot then return nil end
  end
  local values = parent[1] == 'o' and parent[3] or parent[2]
  local current = slot and values[slot]
  local new
  if op == 'remove' then
    if slot then
      if parent[1] == 'o' then table.remove(parent[2], slot) end
      table.remove(values, slot)
    end
    return true
  elseif op == 'set' then
    new = parse(m[4])
  elseif op == 'add' then
    local now, by = integer_of(current), tonumber(m[4])
    if not now then return nil end
    local sum = now + by
    if math.abs(sum) >= EXACT then return nil end
    if m[5] ~= '' and sum < tonumber(m[5]) then return 'min', int(now) end
    if m[6] ~= '' and sum > tonumber(m[6]) then return 'max', int(now) end
    new = { 's', int(sum) }
  elseif op == 'max' or op == 'min' then
    local candidate = tonumber(m[4])
    if current == nil or (current[1] == 's' and current[2] == 'null') then
      new = { 's', m[4] }
    else
      local now = integer_of(current)
      if not now then return nil end
      local wins = (op == 'max' and candidate > now) or (op == 'min' and candidate < now)
      new = wins and { 's', m[4] } or current
    end
  elseif op == 'append' then
    local items
    if current == nil or (current[1] == 's' and current[2] == 'null') then
      items = {}
    elseif current[1] == 'a' then
      items = current[2]
    else
      return nil
    end
    local item = parse(m[4])
    if not item then return nil end
    items[#items + 1] = item
    if m[7] ~= '' then
      local cut = #items - tonumber(m[7])
      if cut > 0 then
        local kept = {}
        for k = cut + 1, #items do kept[#kept + 1] = items[k] end
        items = kept
      end
    end
    new = { 'a', items }
  else
    return nil
  end
  if not new then return nil end
  if slot then
    values[slot] = new
  else
    parent[2][#parent[2] + 1], parent[3][#parent[3] + 1] = last, new
  end
  return true
end

-- The value at a path after the mutations, as JSON text ("null" when absent).
local function value_at(root, tokens)
  local at = root
  for _, token in ipairs(tokens) do
    if at[1] == 'o' then
      local k = key_at(at, token)
      if not k then return 'null' end
      at = at[3][k]
    elseif at[1] == 'a' and find(token, '^%d+$') then
      at = at[2][tonumber(token) + 1]
      if not at then return 'null' end
    else
      return 'null'
    end
  end
  return encode(at)
end

-- Applies a program (a list of mutations) to body text `body` ("{}" for a record it
-- creates). Returns the new body and the values at the mutated paths (a JSON array, each
-- path once, in the order first mutated); or nil to fall back; or false, the mutation's
-- number (from 0), 'min'/'max' and the current value when a bound refuses it.
local function mutate_body(body, program)
  local root = parse(body)
  if not root or root[1] ~= 'o' then return nil end
  for k, m in ipairs(program) do
    local done, current = apply_one(root, m)
    if done == nil then return nil end
    if done ~= true then return false, k - 1, done, current end
  end
  local texts, seen = {}, {}
  for _, m in ipairs(program) do
    if not seen[m[2]] then
      seen[m[2]] = true
      texts[#texts + 1] = value_at(root, m[3])
    end
  end
  return encode(root), '[' .. table.concat(texts, ',') .. ']'
end
