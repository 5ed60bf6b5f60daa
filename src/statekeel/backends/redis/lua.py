"""The Lua scripts of the Redis backend (see :mod:`statekeel.backends.redis`).

Every script works on the Redis keys of one or more *partitions*. A partition's
keys all start with its *base* ``PREFIX:{PARTITION}:`` (the braces are the
Redis Cluster hash tag), so a script given one base touches one hash slot:

    BASE kv:KEY     hash   d data, c codec, v version, ca/ua created/updated, ea expires
    BASE log:LOG    list   element i is entry f + i: ``created_at|len(codec)|codec`` + data
    BASE logh:LOG   hash   f first_seq, l last_seq, ca, ua, ea; g = seqs an import skipped
    BASE keys       zset   live record keys, all score 0 (ZRANGEBYLEX = key order)
    BASE logs       zset   live log names, all score 0
    BASE exp        zset   ``k:KEY`` / ``l:LOG`` scored by expiry in ms (+inf = never)

Timestamps are the client's ``repr(time.time())`` strings, stored verbatim so
reads give back the exact float; the client's ``now`` is an argument of every
script that decides liveness. ``BASE exp`` drives two things: the expiry of the
three index keys (the latest member expiry, or none while any member has none)
and :meth:`purge_expired`, which cleans index members of keys Redis expired.
"""

from __future__ import annotations

# Helpers shared by the writing scripts. NOW_S / NOW are the client's clock.
_COMMON = r"""
local function alive(ea) return (not ea) or tonumber(ea) > NOW end
local function ms(ea) return string.format('%.0f', math.ceil(tonumber(ea) * 1000)) end
local function score(ea)
  if ea then return string.format('%.17g', tonumber(ea) * 1000) end
  return '+inf'
end
local function int(n) return string.format('%d', n) end

-- Native expiry on one Redis key: PEXPIREAT (rounded up to the ms) or none.
local function set_expiry(rkey, ea)
  if ea then redis.call('PEXPIREAT', rkey, ms(ea)) else redis.call('PERSIST', rkey) end
end

-- Index keys follow the latest expiry among their members (none if any has none).
local function refresh(base)
  local top = redis.call('ZREVRANGE', base .. 'exp', 0, 0, 'WITHSCORES')
  if #top == 0 then return end
  for _, suffix in ipairs({'keys', 'logs', 'exp'}) do
    if top[2] == 'inf' then
      redis.call('PERSIST', base .. suffix)
    else
      redis.call('PEXPIREAT', base .. suffix, string.format('%.0f', math.ceil(tonumber(top[2]))))
    end
  end
end
"""

# ``#!lua`` (Redis 7 / Valkey): a script that may write is refused before it
# starts when Redis is out of memory (no half-applied batch), and on a cluster
# node a script touching keys of two slots fails instead of silently working.
_WRITES = "#!lua\n"
_READS = "#!lua flags=no-writes\n"

APPLY = (
    _WRITES
    + r"""
-- ARGV[1] = now; ARGV[2] = the ops, each field prefixed by its length (>I4):
-- code, base, key, operands (see wire.py). Replies with one string.
local NOW_S = ARGV[1]
local NOW = tonumber(NOW_S)
"""
    + _COMMON
    + r"""
-- touched: partitions whose expiry index changed; fresh: partitions that were
-- empty before this batch (the client registers them, see wire.py).
local touched, fresh, seen, current = {}, {}, {}, 0
local function notice(base)
  if seen[base] then return end
  seen[base] = true
  if redis.call('EXISTS', base .. 'exp') == 0 then fresh[#fresh + 1] = current end
end
local function index(base, set, kind, name, ea)
  notice(base)
  redis.call('ZADD', base .. set, 0, name)
  redis.call('ZADD', base .. 'exp', score(ea), kind .. name)
  touched[base] = true
end
local function unindex(base, set, kind, name)
  notice(base)
  local n = redis.call('ZREM', base .. set, name) + redis.call('ZREM', base .. 'exp', kind .. name)
  if n > 0 then touched[base] = true end
end
local function opt(v) if v == '-' then return false end return v end

-- parse --------------------------------------------------------------------
local ops, blob, at = {}, ARGV[2], 1
local function nxt() local v; v, at = struct.unpack('>I4c0', blob, at); return v end
local function items(n) local t = {}; for j = 1, n do t[j] = nxt() end; return t end
local ARITY = {P = 4, D = 1, T = 1, E = 2, R = 1, L = 6, W = 3}
while at <= #blob do
  local op = {code = nxt(), base = nxt(), key = nxt()}
  if op.code == 'A' then op.exp = nxt(); op.items = items(tonumber(nxt()))
  elseif op.code == 'M' then op.exp = opt(nxt()); op.items = items(3 * tonumber(nxt()))
  else op.args = items(ARITY[op.code]) end
  ops[#ops + 1] = op
end

-- compare-and-set: every precondition is checked before anything is written, --
-- each judged as if the ops before it had been applied (memory's semantics) --
local pending, uses = {}, {}
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
    if cur == nil then
      local h = redis.call('HMGET', op.base .. 'kv:' .. op.key, 'v', 'ea')
      cur = (h[1] and alive(h[2])) and tonumber(h[1]) or -1
    end
    if expect ~= '*' then
      local want = expect == '-' and -1 or tonumber(expect)
      if want ~= cur then return '0 ' .. i .. ' ' .. cur end
    end
    if op.code == 'D' or dies(op.args[4]) then pending[op.key] = -1 else pending[op.key] = math.max(cur, 0) + 1 end
  elseif op.code == 'L' then
    pending[op.key] = alive(opt(op.args[6])) and tonumber(op.args[3]) or -1
  elseif op.code == 'T' and dies(op.args[1]) then
    pending[op.key] = -1
  elseif op.code == 'E' and dies(op.args[2]) then
    local lo, hi = string.sub(op.key, 2), string.sub(op.args[1], 2)
    for _, name in ipairs(redis.call('ZRANGEBYLEX', op.base .. 'keys', op.key, op.args[1])) do pending[name] = -1 end
    for name in pairs(pending) do
      if name >= lo and name < hi then pending[name] = -1 end
    end
  end
end

-- records ------------------------------------------------------------------
local function put(op)
  local data, codec, _, exp = unpack(op.args)
  local rk = op.base .. 'kv:' .. op.key
  local h = redis.call('HMGET', rk, 'v', 'ca', 'ea')
  local live = h[1] and alive(h[3])
  if h[1] and not live then redis.call('DEL', rk) end
  local old = live and h[3]
  local ea = old
  if exp ~= 'K' then ea = opt(exp) end
  local version = live and tonumber(h[1]) + 1 or 1
  local ca = live and h[2] or NOW_S
  if ea then
    redis.call('HSET', rk, 'd', data, 'c', codec, 'v', int(version), 'ca', ca, 'ua', NOW_S, 'ea', ea)
  else
    redis.call('HSET', rk, 'd', data, 'c', codec, 'v', int(version), 'ca', ca, 'ua', NOW_S)
    if old then redis.call('HDEL', rk, 'ea') end
  end
  if not live or ea ~= old then
    set_expiry(rk, ea)
    index(op.base, 'keys', 'k:', op.key, ea)
  end
  return int(version) .. ',' .. ca .. ',' .. (ea or '')
end

local function delete(op)
  local rk = op.base .. 'kv:' .. op.key
  local h = redis.call('HMGET', rk, 'v', 'ea')
  redis.call('DEL', rk)
  unindex(op.base, 'keys', 'k:', op.key)
  if h[1] and alive(h[2]) then return 1 end
  return 0
end

local function load(op)
  local data, codec, version, ca, ua, exp = unpack(op.args)
  local rk = op.base .. 'kv:' .. op.key
  local ea = opt(exp)
  redis.call('DEL', rk)
  redis.call('HSET', rk, 'd', data, 'c', codec, 'v', version, 'ca', ca, 'ua', ua)
  if ea then redis.call('HSET', rk, 'ea', ea) end
  set_expiry(rk, ea)
  index(op.base, 'keys', 'k:', op.key, ea)
  return 1
end

-- logs ---------------------------------------------------------------------
-- Element i of BASE log:LOG is seq f + i; '' stands for a seq an import skipped.
local function push(lk, frames)
  local len = 0
  for j = 1, #frames, 1000 do
    len = redis.call('RPUSH', lk, unpack(frames, j, math.min(j + 999, #frames)))
  end
  return len
end

local function log_expiry(op, ea)
  set_expiry(op.base .. 'logh:' .. op.key, ea)
  set_expiry(op.base .. 'log:' .. op.key, ea)
  index(op.base, 'logs', 'l:', op.key, ea)
end

local function append(op)
  local hk, lk = op.base .. 'logh:' .. op.key, op.base .. 'log:' .. op.key
  local h = redis.call('HMGET', hk, 'l', 'ea')
  local live = h[1] and alive(h[2])
  local last, old = 0, false
  if live then last, old = tonumber(h[1]), h[2] else redis.call('DEL', hk, lk) end
  local ea = old
  if op.exp ~= 'K' then ea = opt(op.exp) end
  local n = #op.items
  local created = n > 0 and push(lk, op.items) == n
  if live then
    redis.call('HSET', hk, 'l', int(last + n), 'ua', NOW_S)
  else
    redis.call('HSET', hk, 'f', '1', 'l', int(n), 'ca', NOW_S, 'ua', NOW_S)
  end
  if ea then
    if ea ~= old then redis.call('HSET', hk, 'ea', ea) end
  elseif old then
    redis.call('HDEL', hk, 'ea')
  end
  if not live or ea ~= old then
    log_expiry(op, ea)
  elseif created and ea then  -- the list was trimmed away and comes back: give it the log's expiry
    set_expiry(lk, ea)
  end
  return last + 1
end

local function load_entries(op)
  -- items: seq, created_at, frame for each entry
  local hk, lk = op.base .. 'logh:' .. op.key, op.base .. 'log:' .. op.key
  local h = redis.call('HMGET', hk, 'l', 'ua', 'ea', 'g')
  local n = #op.items / 3
  local last, ua, gaps
  if h[1] and alive(h[3]) then
    last, ua, gaps = tonumber(h[1]), h[2], tonumber(h[4] or '0')
  else
    if n == 0 then return 0 end
    redis.call('DEL', hk, lk)
    last, gaps = tonumber(op.items[1]) - 1, 0
    redis.call('HSET', hk, 'f', op.items[1], 'ca', op.items[2])
  end
  local frames, written = {}, 0
  for j = 0, n - 1 do
    local seq, t = tonumber(op.items[3 * j + 1]), op.items[3 * j + 2]
    if seq > last then
      for _ = last + 2, seq do frames[#frames + 1] = ''; gaps = gaps + 1 end
      frames[#frames + 1] = op.items[3 * j + 3]
      last = seq
      if (not ua) or tonumber(t) > tonumber(ua) then ua = t end
      written = written + 1
    end
  end
  if #frames > 0 then push(lk, frames) end
  redis.call('HSET', hk, 'l', int(last), 'ua', ua)
  if gaps > 0 then redis.call('HSET', hk, 'g', int(gaps)) end
  if op.exp then redis.call('HSET', hk, 'ea', op.exp) else redis.call('HDEL', hk, 'ea') end
  log_expiry(op, op.exp)
  return written
end

local function trim(op)
  local hk, lk = op.base .. 'logh:' .. op.key, op.base .. 'log:' .. op.key
  local h = redis.call('HMGET', hk, 'f', 'l', 'g')
  if not h[1] then return 0 end
  local first = tonumber(h[1])
  local cut = math.min(tonumber(op.args[1]), tonumber(h[2]) + 1)
  if first >= cut then return 0 end
  local dropped, gaps = cut - first, tonumber(h[3] or '0')
  if gaps > 0 then  -- skipped seqs are not entries: do not count them
    local holes = 0
    for _, v in ipairs(redis.call('LRANGE', lk, 0, cut - first - 1)) do
      if v == '' then holes = holes + 1 end
    end
    dropped = dropped - holes
    redis.call('HSET', hk, 'g', int(gaps - holes))
  end
  redis.call('LTRIM', lk, cut - first, -1)
  redis.call('HSET', hk, 'f', int(cut))
  return dropped
end

local function rewrite(op)
  -- args: seq, data, codec. Keeps the entry's created_at (the frame's first field).
  local hk, lk = op.base .. 'logh:' .. op.key, op.base .. 'log:' .. op.key
  local h = redis.call('HMGET', hk, 'f', 'l', 'ea')
  if not (h[1] and alive(h[3])) then return 0 end
  local first, last, seq = tonumber(h[1]), tonumber(h[2]), tonumber(op.args[1])
  if seq < first or seq > last then return 0 end
  local at = seq - first
  if at > last - seq then at = seq - last - 1 end  -- walk from the nearer end
  local old = redis.call('LINDEX', lk, at)
  if (not old) or old == '' then return 0 end
  local data, codec = op.args[2], op.args[3]
  redis.call('LSET', lk, at, string.match(old, '^[^|]*') .. '|' .. #codec .. '|' .. codec .. data)
  return 1
end

-- touch and expire -----------------------------------------------------------
local function set_record_expiry(base, name, ea, old)
  if ea == old then return end
  local rk = base .. 'kv:' .. name
  if ea then redis.call('HSET', rk, 'ea', ea) else redis.call('HDEL', rk, 'ea') end
  set_expiry(rk, ea)
  index(base, 'keys', 'k:', name, ea)
end

local function set_log_expiry(base, name, ea, old)
  if ea == old then return end
  local hk = base .. 'logh:' .. name
  if ea then redis.call('HSET', hk, 'ea', ea) else redis.call('HDEL', hk, 'ea') end
  log_expiry({base = base, key = name}, ea)
end

local function touch(op)
  local exp = op.args[1]
  local rk = op.base .. 'kv:' .. op.key
  local h = redis.call('HMGET', rk, 'v', 'ea')
  if h[1] and alive(h[2]) then
    redis.call('HSET', rk, 'ua', NOW_S)
    if exp ~= 'K' then set_record_expiry(op.base, op.key, opt(exp), h[2]) end
    return 1
  end
  local hk = op.base .. 'logh:' .. op.key
  local g = redis.call('HMGET', hk, 'f', 'l', 'ea')
  if not (g[1] and alive(g[3]) and tonumber(g[2]) >= tonumber(g[1])) then return 0 end
  redis.call('HSET', hk, 'ua', NOW_S)
  if exp ~= 'K' then set_log_expiry(op.base, op.key, opt(exp), g[3]) end
  return 1
end

local function expire(op)
  -- key = ZRANGEBYLEX min bound, args = {max bound, expiry}
  local hi, ea = op.args[1], opt(op.args[2])
  local count = 0
  for _, name in ipairs(redis.call('ZRANGEBYLEX', op.base .. 'keys', op.key, hi)) do
    local h = redis.call('HMGET', op.base .. 'kv:' .. name, 'v', 'ea')
    if h[1] and alive(h[2]) then
      set_record_expiry(op.base, name, ea, h[2])
      count = count + 1
    end
  end
  for _, name in ipairs(redis.call('ZRANGEBYLEX', op.base .. 'logs', op.key, hi)) do
    local g = redis.call('HMGET', op.base .. 'logh:' .. name, 'f', 'ea')
    if g[1] and alive(g[2]) then
      set_log_expiry(op.base, name, ea, g[2])
      count = count + 1
    end
  end
  return count
end

local HANDLERS = {P = put, D = delete, L = load, A = append, M = load_entries,
                  R = trim, W = rewrite, T = touch, E = expire}
local results = {'1', '-'}
for i, op in ipairs(ops) do
  current = i
  results[#results + 1] = HANDLERS[op.code](op)
end
if #fresh > 0 then results[2] = table.concat(fresh, ',') end
for base in pairs(touched) do refresh(base) end
return table.concat(results, ' ')
"""
)

SCAN_KEYS = _READS + r"""
-- KEYS[1] = BASE keys; ARGV = base, min, max, limit, now. Returns {records, dead members}.
local base, lo, hi, limit, NOW = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local out, dead = {}, {}
while #out < limit do
  local want = limit - #out
  local names = redis.call('ZRANGEBYLEX', KEYS[1], lo, hi, 'LIMIT', 0, want)
  for _, name in ipairs(names) do
    local h = redis.call('HMGET', base .. 'kv:' .. name, 'd', 'c', 'v', 'ca', 'ua', 'ea')
    if not h[3] then
      dead[#dead + 1] = name
    elseif (not h[6]) or tonumber(h[6]) > NOW then
      out[#out + 1] = {name, h[1], h[2], h[3], h[4], h[5], h[6] or ''}
    end
  end
  if #names < want then break end
  lo = '(' .. names[#names]
end
return {out, dead}
"""

SCAN_LOGS = _READS + r"""
-- KEYS[1] = BASE logs; ARGV = base, min, max, limit, now. Returns {headers, dead members}.
local base, lo, hi, limit, NOW = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local out, dead = {}, {}
while #out < limit do
  local want = limit - #out
  local names = redis.call('ZRANGEBYLEX', KEYS[1], lo, hi, 'LIMIT', 0, want)
  for _, name in ipairs(names) do
    local g = redis.call('HMGET', base .. 'logh:' .. name, 'f', 'l', 'ca', 'ua', 'ea')
    if not g[1] then
      dead[#dead + 1] = name
    elseif ((not g[5]) or tonumber(g[5]) > NOW) and tonumber(g[2]) >= tonumber(g[1]) then
      out[#out + 1] = {name, g[1], g[2], g[3], g[4], g[5] or ''}
    end
  end
  if #names < want then break end
  lo = '(' .. names[#names]
end
return {out, dead}
"""

READ_LOG = _READS + r"""
-- KEYS = BASE logh:LOG, BASE log:LOG; ARGV = now, start, stop|'', limit|'', reverse 1|0.
-- Returns {first seq, frames}: LRANGE from the nearer end, so a tail read is O(limit).
local g = redis.call('HMGET', KEYS[1], 'f', 'l', 'ea')
if not g[1] or (g[3] and tonumber(g[3]) <= tonumber(ARGV[1])) then return {} end
local first, last = tonumber(g[1]), tonumber(g[2])
if last < first then return {} end
local lo = math.max(tonumber(ARGV[2]), first)
local hi = last + 1
if ARGV[3] ~= '' then hi = math.min(tonumber(ARGV[3]), hi) end
if ARGV[4] ~= '' then
  local limit = tonumber(ARGV[4])
  if ARGV[5] == '1' then lo = math.max(lo, hi - limit) else hi = math.min(hi, lo + limit) end
end
if hi <= lo then return {} end
local a, b = lo - first, hi - 1 - first
if a > last - (hi - 1) then a, b = lo - last - 1, hi - last - 2 end
return {lo, redis.call('LRANGE', KEYS[2], a, b)}
"""

PURGE = (
    _WRITES
    + r"""
-- KEYS[1] = BASE exp; ARGV = base, now, limit. Returns {cleaned, partition is empty}.
local base, NOW_S, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local NOW = tonumber(NOW_S)
"""
    + _COMMON
    + r"""
local names = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', score(NOW_S), 'LIMIT', 0, limit)
local cleaned = 0
for _, member in ipairs(names) do
  local kind, name = member:sub(1, 1), member:sub(3)
  local head = kind == 'k' and (base .. 'kv:' .. name) or (base .. 'logh:' .. name)
  local ea = redis.call('HGET', head, 'ea')
  if redis.call('EXISTS', head) == 1 and alive(ea) then
    redis.call('ZADD', KEYS[1], score(ea), member)  -- stale score: the record lives on
  else
    if kind == 'k' then
      redis.call('DEL', head)
      redis.call('ZREM', base .. 'keys', name)
    else
      redis.call('DEL', head, base .. 'log:' .. name)
      redis.call('ZREM', base .. 'logs', name)
    end
    redis.call('ZREM', KEYS[1], member)
    cleaned = cleaned + 1
  end
end
if cleaned > 0 then refresh(base) end
return {cleaned, redis.call('EXISTS', KEYS[1]) == 0 and 1 or 0}
"""
)

CLEAN = (
    _WRITES
    + r"""
-- KEYS[1] = BASE keys|logs; ARGV = base, kind k|l, names. Drops members whose key is gone.
local base, kind = ARGV[1], ARGV[2]
local NOW = 0
"""
    + _COMMON
    + r"""
local set = kind == 'k' and 'keys' or 'logs'
local head = kind == 'k' and 'kv:' or 'logh:'
local n = 0
for i = 3, #ARGV do
  if redis.call('EXISTS', base .. head .. ARGV[i]) == 0 then
    if kind == 'l' then redis.call('DEL', base .. 'log:' .. ARGV[i]) end
    n = n + redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('ZREM', base .. 'exp', kind .. ':' .. ARGV[i])
  end
end
if n > 0 then refresh(base) end
return n
"""
)
