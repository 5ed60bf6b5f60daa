"""The Redis backend on ``redis.asyncio``: the asyncio API's hot paths, no thread hop.

It sits beside a :class:`~.backend.RedisBackend` of the same store and shares
everything but the I/O with it: the key layout and batch encoding
(:mod:`.wire`), the Lua scripts (loaded by SHA, reloaded when the server lost
them), record and entry decoding with their checksums, the error translation,
and the handle's caches (partitions registered, each log's next seq), so a
store's sync and async calls keep one view. The client is created with the
sync client's own connection settings (no retries: a batch whose reply was
lost is never re-sent). Each event loop gets its own client (a store used in a
second ``asyncio.run``, or from threads each running a loop), closed when that
loop's run ends or by :meth:`aclose` (:mod:`.._loop_end`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, TypeVar

import redis.asyncio as aredis
from redis import exceptions as rx

from ...errors import ConflictError, StoreClosedError, translate
from ...protocol import Entry, Expire, LogInfo, Op, OpResult, Record
from ...protocol.aio import AsyncBackend
from ...protocol.checks import check_ops
from ...protocol.keys import partition
from .._loop_end import PerLoop
from . import backend as sync_backend
from . import records as recs
from . import tail, values, wire
from .aio_client import LoopClient
from .backend import RedisBackend
from .faults import map_error

__all__ = ["AsyncRedisBackend"]

_T = TypeVar("_T")
_Script = recs.Script
_SCRIPTS = sync_backend._SCRIPTS


def _no_expire(prefix: str, created: Collection[str]) -> list[wire.PartitionRange]:
    """The expander of a batch without an Expire (a chat turn): never called, no registry read awaited."""
    raise AssertionError("a batch without Expire ops expanded a prefix")


class AsyncRedisBackend(AsyncBackend):
    """The hot operations of the store's Redis backend, on one ``redis.asyncio`` client."""

    def __init__(self, sync: RedisBackend) -> None:
        self.url = sync.url
        self.batch_scope = sync.batch_scope
        self._sync = sync
        self._layout = sync._layout
        self._registered = sync._registered  # shared with the sync handle: one view of the store
        self._next_seq = sync._next_seq
        self._clients: PerLoop[LoopClient] = PerLoop(lambda: LoopClient(sync), LoopClient.aclose, "statekeel-aio-redis-guard")
        """Each loop's client (:mod:`.._loop_end`): a client's connections belong to one loop."""
        self._closed = False

    # -- plumbing ------------------------------------------------------------
    @property
    def _redis(self) -> aredis.Redis:
        """The redis-py client of the running loop."""
        return self._client.redis

    @property
    def _client(self) -> LoopClient:
        """The running loop's client (:class:`.aio_client.LoopClient`)."""
        if self._closed:
            raise StoreClosedError.of(self.url, "statekeel.open_async()")
        return self._clients.get()

    async def _call(self, fn: Callable[[], Awaitable[_T]]) -> _T:
        if self._closed:
            raise StoreClosedError.of(self.url, "statekeel.open_async()")
        with translate(map_error):
            return await fn()

    async def _with_scripts(self, fn: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``fn``; if the server lost the scripts (restart, SCRIPT FLUSH), load them and run it again."""
        try:
            return await fn()
        except rx.NoScriptError:
            pipe = self._redis.pipeline(transaction=False)
            for script in _SCRIPTS:
                pipe.script_load(script.source)
            await pipe.execute()
            return await fn()

    async def _eval(self, script: _Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        return await self._call(lambda: self._with_scripts(
            lambda: self._evalsha(script.sha, len(keys), *keys, *args)))  # fmt: skip

    async def _evalsha(self, *args: Any) -> Any:
        """``EVALSHA args…`` on the loop's client (:meth:`.aio_client.LoopClient.evalsha`)."""
        return await self._client.evalsha(*args)

    # -- reads ---------------------------------------------------------------
    async def get(self, key: str, *, include_expired: bool = False) -> Record | None:
        wire.utf8(key, "the key")
        fields = recs.RECORD_FIELDS
        h = await self._call(lambda: self._redis.hmget(self._layout.kv(key), fields))
        rec = recs.record(key, h)
        if rec is None or include_expired or recs.alive(rec.expires_at, time.time()):
            return rec
        return None

    async def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        async def run() -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.hmget(self._layout.kv(key), recs.RECORD_FIELDS)
            return await pipe.execute()

        if not keys:
            return []
        for key in keys:
            wire.utf8(key, "the key")
        now = time.time()
        found = [recs.record(k, h) for k, h in zip(keys, await self._call(run))]
        return [r if r is not None and recs.alive(r.expires_at, now) else None for r in found]

    async def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[Record]:
        out: list[Record] = []
        now = time.time()
        for part, lo, hi in await self._ranges(prefix, after):
            if len(out) >= limit:
                break
            base = self._layout.base(part)
            index = base + "keys"
            found = await self._eval(sync_backend._SCAN_KEYS, [index], [base, lo, hi, limit - len(out), repr(now)])
            out += await self._scanned(base, found)
        return out

    async def _scanned(self, base: str, found: tuple[list[Any], list[Any]]) -> list[Record]:
        """The records of a partition's ``SCAN_KEYS`` reply; the index members whose key Redis
        expired are dropped now rather than at the next purge."""
        rows, dead = found
        if dead:
            await self._eval(sync_backend._CLEAN, [base + "keys"], [base, "k", *dead])
        return [rec for r in rows if (rec := recs.record(recs.text(r[0]), r[1:])) is not None]

    async def scan_many(self, scans: Sequence[tuple[str, str | None, int]]) -> list[list[Record]]:
        """Scans each within one partition (a session's, a user's, the app's state): their scripts
        pipelined, one round trip; others as :meth:`scan` reads them."""
        if len(scans) < 2 or not all(wire.in_one_partition(prefix) and limit > 0 for prefix, _, limit in scans):
            return await super().scan_many(scans)
        now = repr(time.time())
        calls: list[tuple[str, list[Any]]] = []  # (partition base, SCAN_KEYS arguments)
        for prefix, after, limit in scans:
            part, lo, hi = (await self._ranges(prefix, after))[0]  # one partition: checks, no round trip
            base = self._layout.base(part)
            calls.append((base, [base, lo, hi, limit, now]))

        async def run() -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            for base, args in calls:
                pipe.evalsha(sync_backend._SCAN_KEYS.sha, 1, base + "keys", *args)
            return await pipe.execute()

        replies = await self._call(lambda: self._with_scripts(run))
        return [await self._scanned(base, found) for (base, _), found in zip(calls, replies)]

    async def _ranges(self, prefix: str, after: str | None) -> list[wire.PartitionRange]:
        """The partition intervals holding keys that start with ``prefix``, in key order."""
        wire.utf8(prefix, "the prefix")
        if after is not None:
            wire.utf8(after, "after=")
        if wire.in_one_partition(prefix):
            return [(partition(prefix), *wire.prefix_range(prefix, after))]
        lo, hi = wire.registry_start(prefix, after), wire.prefix_range(prefix, None)[1]
        return [wire.member_range(m, after) for m in await self._registry_members(lo, hi)]

    async def _registry_members(self, lo: bytes, hi: bytes) -> list[str]:
        out: list[str] = []
        page_size = sync_backend._REGISTRY_PAGE
        while True:
            page: list[Any] = await self._call(
                lambda: self._redis.zrangebylex(self._layout.registry, lo, hi, 0, page_size)
            )
            out += [recs.text(m) for m in page]
            if len(page) < page_size:
                return out
            lo = b"(" + page[-1]

    async def read(
        self, log: str, *, start: int = 1, stop: int | None = None, limit: int | None = None, reverse: bool = False
    ) -> list[Entry]:
        wire.utf8(log, "the log")
        start = int(start)
        args = [repr(time.time()), start, "" if stop is None else int(stop),
                "" if limit is None else int(limit), "1" if reverse else "0"]  # fmt: skip
        span = values.bounds(limit, reverse) if start <= 1 and stop is None else None
        if span is not None:  # from the log's first entry: the sync backend's snapshot
            head, length, frames = await self._call(lambda: self._snapshot(log, span))
            at = values.first_seq(head, length, len(frames), reverse, time.time())
            if at is not None:
                return values.entries(log, at, frames) if at else []
        keys = [self._layout.log_head(log), self._layout.log_data(log)]
        reply = await self._eval(sync_backend._READ_LOG, keys, args)
        return values.entries(log, int(reply[0]), reply[1]) if reply else []

    async def read_values(
        self, log: str, *, limit: int | None = None, reverse: bool = False
    ) -> list[tuple[bytes, str]]:
        """The sync backend's reload: one MULTI/EXEC snapshot, frames checked in bulk (:mod:`.values`)."""
        wire.utf8(log, "the log")
        span = values.bounds(limit, reverse)
        if span is not None:
            head, length, frames = await self._call(lambda: self._snapshot(log, span))
            first = values.first_seq(head, length, len(frames), reverse, time.time())
            if first is not None:
                return values.from_frames(log, first, frames) if first else []
        args = [repr(time.time()), 1, "", "" if limit is None else int(limit), "1" if reverse else "0"]
        reply = await self._eval(sync_backend._READ_LOG, [self._layout.log_head(log), self._layout.log_data(log)], args)
        return values.from_frames(log, int(reply[0]), reply[1]) if reply else []

    get_many_and_values = tail.aget_many_and_values  # records and a log's tail in one round trip

    async def _snapshot(self, log: str, span: tuple[int, int]) -> list[Any]:
        pipe = self._redis.pipeline(transaction=True)
        pipe.hmget(self._layout.log_head(log), ("f", "l", "ea"))
        pipe.llen(self._layout.log_data(log))
        pipe.lrange(self._layout.log_data(log), *span)
        return await pipe.execute()

    async def log_info(self, log: str) -> LogInfo | None:
        wire.utf8(log, "the log")
        head = self._layout.log_head(log)
        h: list[Any] = await self._call(lambda: self._redis.hmget(head, ("f", "l", "ca", "ua", "ea")))
        if h[0] is None:
            return None
        info = LogInfo(log, int(h[0]), int(h[1]), float(h[2]), float(h[3]), recs.opt_float(h[4]))
        if not recs.alive(info.expires_at, time.time()) or info.last_seq < info.first_seq:
            return None
        return info

    # -- writes --------------------------------------------------------------
    async def apply(self, ops: Sequence[Op], *, now: float | None = None) -> list[OpResult]:
        check_ops(ops, now)
        if not ops:
            return []
        now = time.time() if now is None else now
        expand = await self._expander(ops) if any(isinstance(op, Expire) for op in ops) else _no_expire
        batch = wire.encode(self._layout, ops, now, expand, self._next_seq)
        if not batch.owners:  # only Expires over prefixes that hold nothing
            return [0 for _ in ops]
        return await self._call(lambda: self._run_batch(ops, batch, now))

    async def _expander(self, ops: Sequence[Op]) -> Callable[[str, Collection[str]], list[wire.PartitionRange]]:
        """The sync backend's ``_expand`` with the registry read first (awaited): the encoder is pure."""
        known: dict[str, list[str]] = {}
        for op in ops:
            if isinstance(op, Expire) and not wire.in_one_partition(op.prefix) and op.prefix not in known:
                lo, hi = wire.registry_start(op.prefix, None), wire.prefix_range(op.prefix, None)[1]
                known[op.prefix] = await self._registry_members(lo, hi)

        def expand(prefix: str, created: Collection[str]) -> list[wire.PartitionRange]:
            if wire.in_one_partition(prefix):
                return [(partition(prefix), *wire.prefix_range(prefix, None))]
            members = set(known[prefix])
            members.update(m for part in created for m in wire.registry_members(part) if m.startswith(prefix))
            return [wire.member_range(m, None) for m in sorted(members)]

        return expand

    async def _run_batch(self, ops: Sequence[Op], batch: wire.Batch, now: float) -> list[OpResult]:
        """One EVALSHA, registering new partitions first in the same round trip (as the sync backend)."""
        unknown = [p for p in batch.creates.values() if p not in self._registered]
        script = sync_backend._LIGHT if batch.light else sync_backend._APPLY
        args = [script.sha, len(batch.keys), *batch.keys, repr(now), batch.blob]
        try:
            reply = await self._with_scripts(lambda: self._send_batch(args, unknown))
            results, fresh = wire.decode(ops, batch, reply, now)
            if fresh:
                await self._register(fresh)
        except ConflictError:
            raise  # nothing written; any registration sent with it still stands
        except BaseException:
            self._registered.difference_update(batch.creates.values())
            raise
        self._sync._applied(batch.creates.values(), ops, results)
        return results

    async def _send_batch(self, args: list[Any], register: list[str]) -> Any:
        if not register:
            return await self._evalsha(*args)
        pipe = self._redis.pipeline(transaction=False)
        members = {m: 0 for part in register for m in wire.registry_members(part)}
        pipe.zadd(self._layout.registry, members, nx=True)
        pipe.evalsha(*args)
        return (await pipe.execute())[1]

    async def _register(self, partitions: list[str]) -> None:
        members = {m: 0 for part in partitions for m in wire.registry_members(part)}
        await self._redis.zadd(self._layout.registry, members, nx=True)

    # -- housekeeping --------------------------------------------------------
    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._clients.aclose()
