"""The first part of the Redis backend's APPLY script: parse the batch, then check it.

Redis keeps the writes of a script that fails midway, so everything that could
make a write fail, and every precondition (compare-and-set versions, Append's
``at``), is checked here before the first write (see :mod:`.lua`). Replies of a
refused batch: ``0 OP CURRENT`` a version conflict, ``4 OP LAST`` an ``at``
conflict (LAST: the log's last seq), ``2 OP -`` a malformed op, ``3 OP FIELD NAME``
a damaged header field.
"""

from __future__ import annotations

NUMBERS = r"""local BIG = 9007199254740991  -- 2^53 - 1: Lua numbers hold integers exactly up to here
local function num(v, top)  -- v as a number in [-top, top], else nil (tonumber takes 'nan', 'inf')
  local n = tonumber(v)
  if n and n == n and n >= -top and n <= top then return n end
end
local function whole(v) local n = num(v, BIG); return n ~= nil and n % 1 == 0 end
local function expiry(v) return (not v) or v == 'K' or v == '-' or num(v, BIG / 1000) ~= nil end
local function framed(f) return #f >= 5 and string.byte(f, 1) == 35 end  -- '#'
"""
"""Argument checks shared with the light script (:mod:`.lua_light`): numbers Lua holds exactly."""

PREFLIGHT = (
    r"""
-- parse --------------------------------------------------------------------
local ops, blob, at, positional = {}, ARGV[2], 1, false
local function nxt() local v; v, at = struct.unpack('>I4c0', blob, at); return v end
local function items(n) local t = {}; for j = 1, n do t[j] = nxt() end; return t end
local ARITY = {P = 5, D = 1, T = 2, E = 2, R = 1, L = 7, W = 4}
while at <= #blob do
  local op = {code = nxt(), base = nxt(), key = nxt()}
  if op.code == 'A' then
    op.exp = nxt(); op.guess = nxt(); op.items = items(tonumber(nxt()))
    -- a guess written '=N' is Append's ``at`` precondition: the first item must get seq N
    if string.byte(op.guess, 1) == 61 then op.guess = string.sub(op.guess, 2); op.at = tonumber(op.guess); positional = true end
  elseif op.code == 'M' then op.exp = opt(nxt()); op.items = items(3 * tonumber(nxt()))
  else op.args = items(ARITY[op.code]) end
  ops[#ops + 1] = op
end
-- preflight: Redis keeps the writes of a script that fails midway, so whatever -----
-- could make a write fail is checked here, before the first one (see the docstring) --
"""
    + NUMBERS
    + r"""local function valid(op)
  local c, a = op.code, op.args
  if c == 'P' or c == 'D' then
    local e = c == 'P' and a[3] or a[1]
    if not (e == '*' or e == '-' or e == 'x' or whole(e)) then return false end
    return c == 'D' or (expiry(a[4]) and whole(a[5]) and (num(a[5], 4294967295) or -1) >= 0)
  end
  if c == 'T' then return expiry(a[1]) and (a[2] == '' or whole(a[2])) end
  if c == 'E' then return expiry(a[2]) end
  if c == 'R' then return whole(a[1]) end
  if c == 'W' then return whole(a[1]) and #a[4] == 4 end
  if c == 'L' then
    return whole(a[3]) and num(a[4], 1e308) and num(a[5], 1e308) and expiry(a[6]) and whole(a[7])
      and (num(a[7], 4294967295) or -1) >= 0
  end
  if not expiry(op.exp) then return false end
  if c == 'A' then
    for _, f in ipairs(op.items) do if not framed(f) then return false end end
    return whole(op.guess)
  end
  for j = 1, #op.items, 3 do
    if not (whole(op.items[j]) and num(op.items[j + 1], 1e308) and framed(op.items[j + 2])) then return false end
  end
  return true
end

-- Each Redis key is checked once: its type, and the header fields the ops compute
-- with (HMGET fails on a key of another type). A header that only one op of the
-- batch names is read in that op's order and kept in ``unread``, so the op does not
-- read it again; ``heads`` keeps record headers (v first, ea last) for the CAS checks.
local checked, heads, unread, touches, expiring = {}, {}, {}, {}, false
local HEADERS = {['kv:'] = 'PDLT', ['logh:'] = 'AMRWT'}  -- op codes that read or write each kind
for _, op in ipairs(ops) do  -- how many ops of the batch read or write each header
  local c = op.code
  if c == 'E' then expiring = true end
  for kind, codes in pairs(HEADERS) do
    if string.find(codes, c, 1, true) then
      local rkey = op.base .. kind .. op.key
      touches[rkey] = (touches[rkey] or 0) + 1
    end
  end
end
local function fields(kind, code)  -- the header fields an op computes with, in the order it reads them
  if kind == 'kv:' then
    if code == 'D' or code == 'T' then return 'v', 'ea' end
    return 'v', 'ca', 'ea'
  end
  if code == 'A' then return 'l', 'ea' end
  if code == 'R' then return 'f', 'l', 'g' end
  if code == 'W' or code == 'T' then return 'f', 'l', 'ea' end
  if code == 'M' then return 'l', 'ua', 'ea', 'g' end
  return 'f', 'l', 'ua', 'ea', 'g'
end
local function wrong(rkey, want) return 'WRONGTYPE ' .. rkey .. ' is not a ' .. want .. ' statekeel wrote' end
local function typed(rkey, want)
  local t = redis.call('TYPE', rkey)['ok']
  if t ~= 'none' and t ~= want then return wrong(rkey, want) end
end
local function header(base, kind, name, code)  -- returns: type error, or damaged field and name
  local rkey = base .. kind .. name
  if checked[rkey] then return nil end
  checked[rkey] = true
  local alone = touches[rkey] == 1 and not expiring
  code = alone and code or 'all'
  local h = redis.pcall('HMGET', rkey, fields(kind, code))
  if h.err then return wrong(rkey, 'hash') end
  for j = 1, #h do
    if h[j] and not num(h[j], 1e308) then return nil, ({fields(kind, code)})[j] .. ' ' .. name end
  end
  if kind == 'kv:' then heads[name] = h end
  if alone then unread[rkey] = h end
end
local function members(op, set, kind)
  for _, name in ipairs(redis.call('ZRANGEBYLEX', op.base .. set, op.key, op.args[1])) do
    local bad, field = header(op.base, kind, name, 'all')
    if bad or field then return bad, field end
  end
end
local function stored(op)  -- a type error, or a damaged field
  local c, base, bad, field = op.code, op.base, nil, nil
  if not checked[base] then
    checked[base] = true
    bad = typed(base .. 'keys', 'zset') or typed(base .. 'logs', 'zset') or typed(base .. 'exp', 'zset')
  end
  if not bad and (c == 'P' or c == 'D' or c == 'T') then bad, field = header(base, 'kv:', op.key, c) end
  if not (bad or field) and string.find('AMRWT', c, 1, true) then bad, field = header(base, 'logh:', op.key, c) end
  if not (bad or field) and string.find('AMRW', c, 1, true) then bad = typed(base .. 'log:' .. op.key, 'list') end
  if not (bad or field) and c == 'E' then bad, field = members(op, 'keys', 'kv:') end
  if not (bad or field) and c == 'E' then bad, field = members(op, 'logs', 'logh:') end
  return bad, field
end
for i, op in ipairs(ops) do
  if not valid(op) then return '2 ' .. i .. ' -' end
  local bad, field = stored(op)
  if bad then return redis.error_reply(bad) end
  if field then return '3 ' .. i .. ' ' .. field end
end

-- compare-and-set: every precondition is checked before anything is written, --
-- each judged as if the ops before it had been applied (memory's semantics) --
local pending, uses, nexts, ended = {}, {}, {}, {}
for _, op in ipairs(ops) do
  if op.code == 'P' or op.code == 'D' or op.code == 'L' or op.code == 'T' then
    uses[op.key] = (uses[op.key] or 0) + 1
  end
end
local function dies(exp) return exp ~= 'K' and exp ~= '-' and not alive(exp) end
for i, op in ipairs(ops) do
  local expect = (op.code == 'P' and op.args[3]) or (op.code == 'D' and op.args[1]) or '*'
  -- an unconditional write of a key no other op of the batch names needs no read here
  if (op.code == 'P' or op.code == 'D') and (expect ~= '*' or uses[op.key] > 1) then
    local cur = pending[op.key]
    if cur == nil then  -- the preflight read every record's header
      local h = heads[op.key]
      cur = (h[1] and alive(h[#h])) and tonumber(h[1]) or -1
    end
    if expect ~= '*' then
      local want = expect == '-' and -1 or tonumber(expect)
      if want ~= cur then return '0 ' .. i .. ' ' .. cur end
    end
    if op.code == 'D' or dies(op.args[4]) then pending[op.key] = -1 else pending[op.key] = math.max(cur, 0) + 1 end
  elseif op.code == 'A' and positional then  -- Append's ``at``, judged after the batch's earlier ops
    local nx = nexts[op.key]
    if nx == nil then
      local h = unread[op.base .. 'logh:' .. op.key] or redis.call('HMGET', op.base .. 'logh:' .. op.key, 'l', 'ea')
      nx = (h[1] and alive(h[2])) and tonumber(h[1]) + 1 or 1
      for _, r in ipairs(ended) do if op.key >= r[1] and op.key < r[2] then nx = 1 end end
    end
    if op.at and op.at ~= nx then return '4 ' .. i .. ' ' .. int(nx - 1) end
    nexts[op.key] = nx + #op.items
  elseif op.code == 'L' then
    pending[op.key] = alive(opt(op.args[6])) and tonumber(op.args[3]) or -1
  elseif op.code == 'T' and op.args[2] == '' and dies(op.args[1]) then  -- a refresh: its key alone
    pending[op.key] = -1
    nexts[op.key] = 1
  elseif op.code == 'E' and dies(op.args[2]) then
    local lo, hi = string.sub(op.key, 2), string.sub(op.args[1], 2)
    for _, name in ipairs(redis.call('ZRANGEBYLEX', op.base .. 'keys', op.key, op.args[1])) do pending[name] = -1 end
    for name in pairs(pending) do
      if name >= lo and name < hi then pending[name] = -1 end
    end
    for name in pairs(nexts) do
      if name >= lo and name < hi then nexts[name] = 1 end
    end
    ended[#ended + 1] = {lo, hi}
  end
end

"""
)
