"""The Lua scripts of the Redis backend (see :mod:`statekeel.backends.redis`).

Every script works on the Redis keys of one or more *partitions*. A partition's
keys all start with its *base* ``PREFIX:{PARTITION}:`` (the braces are the
Redis Cluster hash tag), so a script given one base touches one hash slot:

    BASE kv:KEY     hash   d data, c codec, v version, ca/ua created/updated, ea expires,
                           s checksum (absent: written before checksums, read unchecked)
    BASE log:LOG    list   element i is entry f + i: ``#``, its checksum (4 bytes, big-endian),
                           then ``created_at|len(codec)|codec`` + data (without ``#`` and
                           checksum: written before checksums, read unchecked)
    BASE logh:LOG   hash   f first_seq, l last_seq, ca, ua, ea; g = seqs an import skipped
    BASE keys       zset   live record keys, all score 0 (ZRANGEBYLEX = key order)
    BASE logs       zset   live log names, all score 0
    BASE exp        zset   ``k:KEY`` / ``l:LOG`` scored by expiry in ms (+inf = never)

Timestamps are the client's ``repr(time.time())`` strings, stored verbatim so
reads give back the exact float; the client's ``now`` is an argument of every
script that decides liveness. ``BASE exp`` drives two things: the expiry of the
three index keys (the latest member expiry, or none while any member has none)
and :meth:`purge_expired`, which cleans index members of keys Redis expired.

Checksums (:mod:`statekeel.protocol.integrity`): the script numbers versions and
seqs, so the client sends the CRC part (``base_sum``) and the script adds the
number — a Put's ``s`` is ``(base + version) % 2^32``. An Append's frames arrive
sealed with the seqs the client guessed (its previous append to the log told
it); when the log has moved on meanwhile, the script shifts each checksum by
the difference. Load, LoadEntries and Rewrite know their number: their
checksums arrive whole.

APPLY is all or nothing: Redis keeps the writes of a script that fails midway,
so the PREFLIGHT part checks, before the first write, everything that could
make a write fail — each argument (the client checked them too), the type of
every Redis key the batch touches, and the numeric header fields it will
compute with. The everyday batch runs a lighter twin of this script (:mod:`.lua_light`).
"""

from __future__ import annotations

from .lua_preflight import PREFLIGHT

# Helpers shared by the writing scripts. NOW_S / NOW are the client's clock.
COMMON = r"""
local function alive(ea) return (not ea) or tonumber(ea) > NOW end
local function ms(ea) return string.format('%.0f', math.ceil(tonumber(ea) * 1000)) end
local function score(ea)
  if ea then return string.format('%.17g', tonumber(ea) * 1000) end
  return '+inf'
end
local function int(n) return string.format('%d', n) end
local function sealed(base, n) return (base + n % 4294967296) % 4294967296 end

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
WRITES = "#!lua\n"
READS = "#!lua flags=no-writes\n"

SHARED_WRITES = r"""
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
-- A Put once its checks passed: the record's next version written into its hash (a dead one
-- replaced; h = its v, ca, ea; old = the live record's expiry), indexed when new or when its expiry
-- moved. Returns the reply's "version,created_at,expires_at".
local function put_record(base, key, rk, h, live, old, ea, data, codec, sum_base)
  if h[1] and not live then redis.call('DEL', rk) end
  local version = live and tonumber(h[1]) + 1 or 1
  local ca = live and h[2] or NOW_S
  local sum = int(sealed(tonumber(sum_base), version))
  if ea then
    redis.call('HSET', rk, 'd', data, 'c', codec, 'v', int(version), 's', sum, 'ca', ca, 'ua', NOW_S, 'ea', ea)
  else
    redis.call('HSET', rk, 'd', data, 'c', codec, 'v', int(version), 's', sum, 'ca', ca, 'ua', NOW_S)
    if old then redis.call('HDEL', rk, 'ea') end
  end
  if not live or ea ~= old then
    set_expiry(rk, ea)
    index(base, 'keys', 'k:', key, ea)
  end
  return int(version) .. ',' .. ca .. ',' .. (ea or '')
end
-- Frames sealed for seqs the client guessed wrong: each checksum moved on by shift.
local function reseal(items, shift)
  for j = 1, #items do
    local f = items[j]
    items[j] = '#' .. struct.pack('>I4', sealed(struct.unpack('>I4', f, 2), shift)) .. string.sub(f, 6)
  end
end
-- frames pushed onto a log's list (in runs of 1000: Lua's unpack has a limit); the list's new length.
local function push(lk, frames)
  local len = 0
  for j = 1, #frames, 1000 do
    len = redis.call('RPUSH', lk, unpack(frames, j, math.min(j + 999, #frames)))
  end
  return len
end
-- A log's expiry on its header and list, and in the partition's index.
local function log_expiry(op, ea)
  set_expiry(op.base .. 'logh:' .. op.key, ea)
  set_expiry(op.base .. 'log:' .. op.key, ea)
  index(op.base, 'logs', 'l:', op.key, ea)
end
-- A log's header after n entries were appended to it (live: it held entries up to last).
local function write_log_head(hk, live, last, n, ea, old)
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
end
"""
"""The writes APPLY and LIGHT share: the partition indexes, a record's hash, a log's header
(after COMMON, which defines ``score``, ``int`` and ``sealed``; the script defines ``NOW_S`` and sets
``current`` to the op being written)."""

RUN = r"""
local results = {'1', '-'}
for i, op in ipairs(ops) do
  current = i
  results[#results + 1] = HANDLERS[op.code](op)
end
if #fresh > 0 then results[2] = table.concat(fresh, ',') end
for base in pairs(touched) do refresh(base) end
return table.concat(results, ' ')
"""
"""The end of APPLY and LIGHT: each parsed op (``ops``) written by its ``HANDLERS`` entry, in order;
the reply: '1', the partitions written from empty, each op's result."""

APPLY = (
    WRITES
    + r"""
-- ARGV[1] = now; ARGV[2] = the ops, each field prefixed by its length (>I4):
-- code, base, key, operands (see wire.py). Replies with one string.
local NOW_S = ARGV[1]
local NOW = tonumber(NOW_S)
"""
    + COMMON
    + SHARED_WRITES
    + r"""
local function opt(v) if v == '-' then return false end return v end

"""
    + PREFLIGHT
    + r"""
-- records ------------------------------------------------------------------
local function put(op)
  local data, codec, _, exp, base = unpack(op.args)
  local rk = op.base .. 'kv:' .. op.key
  local h = unread[rk] or redis.call('HMGET', rk, 'v', 'ca', 'ea')
  local live = h[1] and alive(h[3])
  local old = live and h[3]
  local ea = old
  if exp ~= 'K' then ea = opt(exp) end
  return put_record(op.base, op.key, rk, h, live, old, ea, data, codec, base)
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
  local data, codec, version, ca, ua, exp, sum = unpack(op.args)
  local rk = op.base .. 'kv:' .. op.key
  local ea = opt(exp)
  redis.call('DEL', rk)
  redis.call('HSET', rk, 'd', data, 'c', codec, 'v', version, 's', sum, 'ca', ca, 'ua', ua)
  if ea then redis.call('HSET', rk, 'ea', ea) end
  set_expiry(rk, ea)
  index(op.base, 'keys', 'k:', op.key, ea)
  return 1
end

-- logs ---------------------------------------------------------------------
-- Element i of BASE log:LOG is seq f + i; '' stands for a seq an import skipped.


local function append(op)
  local hk, lk = op.base .. 'logh:' .. op.key, op.base .. 'log:' .. op.key
  local h = unread[hk] or redis.call('HMGET', hk, 'l', 'ea')
  local live = h[1] and alive(h[2])
  local last, old = 0, false
  if live then last, old = tonumber(h[1]), h[2] else redis.call('DEL', hk, lk) end
  local ea = old
  if op.exp ~= 'K' then ea = opt(op.exp) end
  local n = #op.items
  local shift = (last + 1 - tonumber(op.guess)) % 4294967296  -- 0: the client guessed the seqs right
  if shift ~= 0 then reseal(op.items, shift) end
  local created = n > 0 and push(lk, op.items) == n
  write_log_head(hk, live, last, n, ea, old)
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
  -- args: seq, data, codec, checksum (4 bytes). Keeps the entry's created_at (the frame's first field).
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
  if string.sub(old, 1, 1) == '#' then old = string.sub(old, 6) end
  redis.call('LSET', lk, at, '#' .. op.args[4] .. string.match(old, '^[^|]*') .. '|' .. #codec .. '|' .. codec .. data)
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
  local exp, refresh = op.args[1], op.args[2]
  local rk = op.base .. 'kv:' .. op.key
  local h = redis.call('HMGET', rk, 'v', 'ea')
  if refresh ~= '' and not (h[1] and h[2] and alive(h[2]) and tonumber(h[1]) == tonumber(refresh)) then
    return 0  -- a TTL refresh: only the version read, still expiring
  end
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
"""
    + RUN
)
