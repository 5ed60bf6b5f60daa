"""The Redis backend's scripts that read ranges and clean index members (see :mod:`.lua` for the layout).

SCAN_KEYS / SCAN_LOGS page through a partition's index, READ_LOG reads a range
of a log from its nearer end, PURGE and CLEAN drop index members whose Redis
key expired.
"""

from __future__ import annotations

from .lua import COMMON, READS, WRITES

COUNT = r"""
-- count(arg): a limit as a number Redis takes back. Lua numbers are doubles, and a large one
-- (2**63 - 1, the API's largest) comes back to Redis as '9.2233720368547758e+18', which LIMIT
-- refuses; no index holds more than 2**32 - 1 members, so a larger limit is no limit.
local function count(arg) return math.min(tonumber(arg), 4294967295) end
"""

SCAN_KEYS = READS + COUNT + r"""
-- KEYS[1] = BASE keys; ARGV = base, min, max, limit, now. Returns {records, dead members}:
-- a record is {key, d, c, v, ca, ua, ea, s}, a missing field false (nil would end the array).
local base, lo, hi, limit, NOW = ARGV[1], ARGV[2], ARGV[3], count(ARGV[4]), tonumber(ARGV[5])
local out, dead = {}, {}
while #out < limit do
  local want = limit - #out
  local names = redis.call('ZRANGEBYLEX', KEYS[1], lo, hi, 'LIMIT', 0, want)
  for _, name in ipairs(names) do
    local h = redis.call('HMGET', base .. 'kv:' .. name, 'd', 'c', 'v', 'ca', 'ua', 'ea', 's')
    if not h[3] then
      dead[#dead + 1] = name
    elseif (not h[6]) or (tonumber(h[6]) or math.huge) > NOW then  -- a damaged ea: the client reports it
      out[#out + 1] = {name, h[1] or false, h[2] or false, h[3], h[4] or false, h[5] or false, h[6] or false,
                       h[7] or false}
    end
  end
  if #names < want then break end
  lo = '(' .. names[#names]
end
return {out, dead}
"""

SCAN_LOGS = READS + COUNT + r"""
-- KEYS[1] = BASE logs; ARGV = base, min, max, limit, now. Returns {headers, dead members}.
local base, lo, hi, limit, NOW = ARGV[1], ARGV[2], ARGV[3], count(ARGV[4]), tonumber(ARGV[5])
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

READ_LOG = READS + r"""
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
    WRITES
    + COUNT
    + r"""
-- KEYS[1] = BASE exp; ARGV = base, now, limit. Returns {cleaned, partition is empty}.
local base, NOW_S, limit = ARGV[1], ARGV[2], count(ARGV[3])
local NOW = tonumber(NOW_S)
"""
    + COMMON
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
    WRITES
    + r"""
-- KEYS[1] = BASE keys|logs; ARGV = base, kind k|l, names. Drops members whose key is gone.
local base, kind = ARGV[1], ARGV[2]
local NOW = 0
"""
    + COMMON
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

RECORD_LAYOUT = r"""
-- KEYS[1] = the store's marker (a hash: migrate() checked); ARGV = layout, now. Records the layout
-- only over an older one, so a newer statekeel's that raced this migrate() is never set back;
-- returns the layout the marker holds after.
local held = tonumber(redis.call('HGET', KEYS[1], 'layout') or '0')
if held < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'layout', ARGV[1], 'migrated_at', ARGV[2])
  return tonumber(ARGV[1])
end
return held
"""
