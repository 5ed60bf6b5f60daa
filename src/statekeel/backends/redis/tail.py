"""``get_many_and_values`` on Redis: a session's records and its history's tail at once (sync and asyncio).

A chat turn's reload needs a few records (the session, its marks) and the newest
entries of its log; the protocol's default reads them with two calls. Here one
round trip answers both, as one consistent snapshot:

* a tail (``limit`` newest entries) — the READ_TAIL script: the records' fields packed into
  one string (split here with a few slices) beside the tail's frames. redis-py parses every
  element of a reply in Python: a MULTI/EXEC of the same reads (9 replies, ~60 elements) cost
  more than the read itself for a 20-message tail;
* the whole log — one MULTI/EXEC of the records' HMGETs and the log snapshot that
  :mod:`.values` reads (a script would copy every element through Lua).

Used when the keys and the log share a partition (one Cluster slot, as a session's
keys do) or the server is not a cluster; otherwise — and when the snapshot does not
add up (:func:`.values.first_seq`) — the two reads are made one after the other.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from redis import exceptions as rx

from ...protocol import BatchScope, Record
from ...protocol.keys import partition
from . import records as recs
from . import values, wire
from .lua import READS

if TYPE_CHECKING:  # the sync backend imports this module: it must not load asyncio
    import redis.asyncio as aredis

_T = TypeVar("_T")


class _Backend(Protocol):
    """What these reads use of :class:`.aio.AsyncRedisBackend` (not imported: it imports this)."""

    batch_scope: BatchScope
    _layout: wire.Layout

    @property
    def _redis(self) -> aredis.Redis: ...

    async def _call(self, fn: Callable[[], Awaitable[_T]]) -> _T: ...

    async def get_many(self, keys: Sequence[str]) -> list[Record | None]: ...

    async def read_values(
        self, log: str, *, limit: int | None = None, reverse: bool = False
    ) -> list[tuple[bytes, str]]: ...

__all__ = ["READ_TAIL", "SCRIPT", "aget_many_and_values", "one_round_trip", "snapshot_found", "snapshot_into", "tail_call", "tail_found"]

READ_TAIL = READS + r"""
-- KEYS = the records' BASE kv:KEY..., BASE logh:LOG, BASE log:LOG; ARGV = now, limit (>= 1).
-- Returns {fields, frames}: fields is one string of length-prefixed items (a 4-byte big-endian
-- signed length, -1 for a missing one, then the bytes) — each record's d, c, v, ca, ua, ea, s,
-- then the tail's first seq (0 for an absent, expired or empty log) — and frames the tail's list
-- elements as LRANGE gives them (packing those too would copy every message through Lua again).
local n = #KEYS - 2
local out, NIL = {}, struct.pack('>i4', -1)
for i = 1, n do
  for _, v in ipairs(redis.call('HMGET', KEYS[i], 'd', 'c', 'v', 'ca', 'ua', 'ea', 's')) do
    if v then out[#out + 1] = struct.pack('>i4', #v) .. v else out[#out + 1] = NIL end
  end
end
local g = redis.call('HMGET', KEYS[n + 1], 'f', 'l', 'ea')
if not g[1] or (g[3] and tonumber(g[3]) <= tonumber(ARGV[1])) or tonumber(g[2]) < tonumber(g[1]) then
  out[#out + 1] = struct.pack('>i4', 1) .. '0'
  return {table.concat(out), {}}
end
local first, last = tonumber(g[1]), tonumber(g[2])
local lo = math.max(first, last + 1 - tonumber(ARGV[2]))
local seq = tostring(lo)
out[#out + 1] = struct.pack('>i4', #seq) .. seq
return {table.concat(out), redis.call('LRANGE', KEYS[n + 2], lo - last - 1, -1)}
"""

SCRIPT = recs.Script(READ_TAIL)
Found = tuple[list[Record | None], list[tuple[bytes, str]]]


def one_round_trip(batch_scope: BatchScope, keys: Sequence[str], log: str) -> bool:
    """Whether one script or transaction may read all of it (a cluster refuses one across slots)."""
    for key in keys:
        wire.utf8(key, "the key")
    wire.utf8(log, "the log")
    return batch_scope != "partition" or all(partition(k) == partition(log) for k in keys)


def _records(keys: Sequence[str], replies: Sequence[Any], now: float) -> list[Record | None]:
    found = [recs.record(k, h) for k, h in zip(keys, replies)]
    return [r if r is not None and recs.alive(r.expires_at, now) else None for r in found]


async def aget_many_and_values(
    backend: _Backend, keys: Sequence[str], log: str, *, limit: int | None = None, reverse: bool = False
) -> Found:
    """:meth:`~statekeel.protocol.aio.AsyncBackend.get_many_and_values` in one round trip."""
    span = values.bounds(limit, reverse)
    if span is None or not one_round_trip(backend.batch_scope, keys, log):
        return await backend.get_many(keys), await backend.read_values(log, limit=limit, reverse=reverse)
    now = time.time()
    if limit is not None and reverse:
        names, args = tail_call(backend._layout, keys, log, limit, now)

        async def run() -> Any:
            try:
                return await backend._redis.evalsha(SCRIPT.sha, len(names), *names, *args)
            except rx.NoScriptError:  # the server lost it (restart, SCRIPT FLUSH): load it and run it again
                await backend._redis.script_load(SCRIPT.source)
                return await backend._redis.evalsha(SCRIPT.sha, len(names), *names, *args)

        return tail_found(keys, log, await backend._call(run), now)

    async def snapshot() -> list[Any]:
        pipe = backend._redis.pipeline(transaction=True)
        snapshot_into(pipe, backend._layout, keys, log, span)
        return await pipe.execute()

    records, found = snapshot_found(keys, log, await backend._call(snapshot), reverse, now)
    return records, await backend.read_values(log, limit=limit, reverse=reverse) if found is None else found


# -- the reads of both backends, without their I/O ------------------------------------------
def tail_call(layout: wire.Layout, keys: Sequence[str], log: str, limit: int, now: float) -> tuple[list[str], list[Any]]:
    """READ_TAIL's keys and arguments for the records ``keys`` and the newest ``limit`` entries of ``log``."""
    return [*(layout.kv(k) for k in keys), layout.log_head(log), layout.log_data(log)], [repr(now), limit]


def tail_found(keys: Sequence[str], log: str, reply: Any, now: float) -> Found:
    """The records and values of READ_TAIL's ``reply``."""
    packed, frames = reply
    items = _split(packed)
    fields = 7 * len(keys)
    records = _records(keys, [items[i : i + 7] for i in range(0, fields, 7)], now)
    first = int(items[fields])
    return records, values.from_frames(log, first, frames) if first else []


_LENGTH = struct.Struct(">i")


def _split(blob: bytes) -> list[Any]:
    """READ_TAIL's items (None for a missing one)."""
    out: list[Any] = []
    at, end, length = 0, len(blob), _LENGTH.unpack_from
    while at < end:
        (n,) = length(blob, at)
        at += 4
        if n < 0:
            out.append(None)
        else:
            out.append(blob[at : at + n])
            at += n
    return out


def snapshot_into(pipe: Any, layout: wire.Layout, keys: Sequence[str], log: str, span: tuple[int, int]) -> None:
    """Queue on a MULTI/EXEC ``pipe`` (sync or asyncio) the records' HMGETs and the log's snapshot."""
    for key in keys:
        pipe.hmget(layout.kv(key), recs.RECORD_FIELDS)
    pipe.hmget(layout.log_head(log), ("f", "l", "ea"))
    pipe.llen(layout.log_data(log))
    pipe.lrange(layout.log_data(log), *span)


def snapshot_found(
    keys: Sequence[str], log: str, reply: list[Any], reverse: bool, now: float
) -> tuple[list[Record | None], list[tuple[bytes, str]] | None]:
    """The records and values of a :func:`snapshot_into` transaction's ``reply``; the values None when
    the snapshot does not add up (:func:`.values.first_seq`: the caller reads them with ``read_values``)."""
    head, length, frames = reply[len(keys) :]
    first = values.first_seq(head, length, len(frames), reverse, now)
    found = None if first is None else values.from_frames(log, first, frames) if first else []
    return _records(keys, reply[: len(keys)], now), found
