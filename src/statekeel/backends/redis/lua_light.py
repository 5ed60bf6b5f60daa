"""LIGHT: the APPLY script for the everyday batch — Puts, Deletes and Appends, each key and log once.

A chat turn (an Append and a state Put) and a tiered write-behind turn (a marker
Put, the turn's ops, an Append to the queue) are this shape. Its ops do not depend
on each other, so the script can read each op's header once and judge it alone:
no pending versions, no per-key use counts, no handler table. It takes the same
arguments as APPLY (:func:`.wire.encode`; the client picks the script, see
:attr:`.wire.Batch.light`), answers in the same words (:func:`.wire.decode`) and
writes exactly what APPLY writes — it is APPLY with the generality taken out.

What it checks before its first write, as APPLY does: every argument, each header
(HMGET under ``pcall``: a key of another type is a WRONGTYPE reply; a field that is
not a number refuses the batch naming it), the type of each list it pushes to, every
compare-and-set and ``at``. What it checks only where a write could fail: the
partition's index sorted sets (``keys``, ``logs``, ``exp``) are type-checked only
when the batch writes them — a new record or log, a changed expiry, a delete. An
everyday turn writes none of them, and those three TYPE calls per partition were
most of what LIGHT saves (Redis CPU per turn −22 %; −9 % with them).

So LIGHT differs from APPLY in one case only, on keys statekeel did not write: when
another program replaced an index set of the partition with a key of another type,
APPLY refuses every batch there, LIGHT only those that would write the set (still
nothing written, the same error) — a steady turn goes through, leaving the set as
it is. And of a batch with several faults, the one named may differ (both write
nothing). tests/test_redis_light_equivalence.py runs random batches and damaged
stores through both scripts and compares replies and stored bytes.
"""

from __future__ import annotations

from .lua import COMMON, RUN, SHARED_WRITES, WRITES
from .lua_preflight import NUMBERS

LIGHT = (
    WRITES
    + r"""
-- ARGV[1] = now; ARGV[2] = the ops (P, D and A only; each key and each log once).
local NOW_S = ARGV[1]
local NOW = tonumber(NOW_S)
"""
    + COMMON
    + NUMBERS
    + r"""
local function opt(v) if v == '-' then return false end return v end
local function wrong(rkey, want) return 'WRONGTYPE ' .. rkey .. ' is not a ' .. want .. ' statekeel wrote' end
-- parse: one struct.unpack per op's fixed fields (each field prefixed by its length)
local blob, at, ops, unpack_ = ARGV[2], 1, {}, struct.unpack
local size = #blob
while at <= size do
  local code, op
  code, at = unpack_('>I4c0', blob, at)
  -- each op table is built whole (the later fields named too), so Lua sizes it once
  if code == 'P' then
    local base, key, data, codec, expect, exp, sum
    base, key, data, codec, expect, exp, sum, at = unpack_('>I4c0I4c0I4c0I4c0I4c0I4c0I4c0', blob, at)
    op = {code = code, base = base, key = key, data = data, codec = codec, expect = expect, exp = exp, sum = sum,
          rk = false, h = false, live = false, old = false, ea = false}
  elseif code == 'D' then
    local base, key, expect
    base, key, expect, at = unpack_('>I4c0I4c0I4c0', blob, at)
    op = {code = code, base = base, key = key, expect = expect, rk = false, h = false, live = false, old = false}
  elseif code == 'A' then
    local base, key, exp, guess, n
    base, key, exp, guess, n, at = unpack_('>I4c0I4c0I4c0I4c0I4c0', blob, at)
    local items = {}
    for j = 1, tonumber(n) do items[j], at = unpack_('>I4c0', blob, at) end
    op = {code = code, base = base, key = key, exp = exp, guess = guess, items = items, at = false,
          rk = false, lk = false, h = false, live = false, old = false, ea = false}
    -- a guess written '=N' is Append's ``at`` precondition: the first item must get seq N
    if string.byte(guess, 1) == 61 then op.guess = string.sub(guess, 2); op.at = tonumber(op.guess) end
  else
    return '2 ' .. (#ops + 1) .. ' -'
  end
  ops[#ops + 1] = op
end

-- check: arguments, headers (read once, kept for the write), list types -------
local FIELDS = {P = {'v', 'ca', 'ea'}, D = {'v', 'ea'}, A = {'l', 'ea'}}
local indexed = {}  -- bases whose index sets this batch writes
local function valid(op)
  local c, e = op.code, op.expect
  if c == 'A' then
    if not (expiry(op.exp) and whole(op.guess)) then return false end
    for _, f in ipairs(op.items) do if not framed(f) then return false end end
    return true
  end
  if not (e == '*' or e == '-' or e == 'x' or whole(e)) then return false end
  return c == 'D' or (expiry(op.exp) and whole(op.sum) and (num(op.sum, 4294967295) or -1) >= 0)
end
for i, op in ipairs(ops) do
  if not valid(op) then return '2 ' .. i .. ' -' end
  local c = op.code
  op.rk = op.base .. (c == 'A' and 'logh:' or 'kv:') .. op.key
  local names = FIELDS[c]
  local h = redis.pcall('HMGET', op.rk, unpack(names))
  if h.err then return redis.error_reply(wrong(op.rk, 'hash')) end
  for j = 1, #h do
    if h[j] and not num(h[j], 1e308) then return '3 ' .. i .. ' ' .. names[j] .. ' ' .. op.key end
  end
  op.h = h
  local ea_at = #h  -- ea is the last field read
  op.live = h[1] and alive(h[ea_at])
  op.old = op.live and h[ea_at]
  if c == 'D' then
    indexed[op.base] = true
  else
    op.ea = op.old
    if op.exp ~= 'K' then op.ea = opt(op.exp) end
    if not op.live or op.ea ~= op.old then indexed[op.base] = true end
  end
  if c == 'A' then
    op.lk = op.base .. 'log:' .. op.key
    local t = redis.call('TYPE', op.lk)['ok']
    if t ~= 'none' and t ~= 'list' then return redis.error_reply(wrong(op.lk, 'list')) end
  end
end
for base in pairs(indexed) do
  for _, suffix in ipairs({'keys', 'logs', 'exp'}) do
    local t = redis.call('TYPE', base .. suffix)['ok']
    if t ~= 'none' and t ~= 'zset' then return redis.error_reply(wrong(base .. suffix, 'zset')) end
  end
end

-- compare-and-set and ``at``: each op alone (no op of the batch names its key or log again)
for i, op in ipairs(ops) do
  if op.code == 'A' then
    if op.at then
      local nx = op.live and tonumber(op.h[1]) + 1 or 1
      if op.at ~= nx then return '4 ' .. i .. ' ' .. int(nx - 1) end
    end
  elseif op.expect ~= '*' then
    local cur = op.live and tonumber(op.h[1]) or -1
    local want = op.expect == '-' and -1 or tonumber(op.expect)
    if want ~= cur then return '0 ' .. i .. ' ' .. cur end
  end
end

-- write: what APPLY's put, delete and append write ------------------------------
"""
    + SHARED_WRITES
    + r"""

local function put(op)
  return put_record(op.base, op.key, op.rk, op.h, op.live, op.old, op.ea, op.data, op.codec, op.sum)
end

local function delete(op)
  redis.call('DEL', op.rk)
  unindex(op.base, 'keys', 'k:', op.key)
  if op.live then return 1 end
  return 0
end

local function append(op)
  local hk, lk, live, ea, old = op.rk, op.lk, op.live, op.ea, op.old
  local last = 0
  if live then last = tonumber(op.h[1]) else redis.call('DEL', hk, lk) end
  local items, n = op.items, #op.items
  local shift = (last + 1 - tonumber(op.guess)) % 4294967296  -- 0: the client guessed the seqs right
  if shift ~= 0 then reseal(items, shift) end
  local created = n > 0 and push(lk, items) == n
  write_log_head(hk, live, last, n, ea, old)
  if not live or ea ~= old then
    log_expiry(op, ea)
  elseif created and ea then  -- the list was trimmed away and comes back: give it the log's expiry
    set_expiry(lk, ea)
  end
  return last + 1
end

local HANDLERS = {P = put, D = delete, A = append}
"""
    + RUN
)
