"""The hot paths of the asyncio API on a native asyncio backend: no thread hop.

With a PostgreSQL or Redis store (plain, encrypted — :mod:`statekeel.core.sealed_aio` —
or tamper-evident — :mod:`statekeel.core.chained_aio` —, and a tenant's view of any of
them — :mod:`statekeel.backends.tenant_aio`), :class:`~statekeel.aio.AsyncStore` opens an
:class:`~statekeel.protocol.aio.AsyncBackend` beside the sync backend, and
session open, append, heartbeat, batch commits, ``history``/``count``/``info``
and state get/put/delete/update run on it directly on the event loop. They run
the same pure code as the sync API — :func:`plan_session_write` decides what
to write, the codec encodes and decodes, the sync ``Session``/``StateView``
objects hold the handle's state — and only the I/O is awaited here. Anything
that needs more (a lease's fence, the one-off reactivation of a completed
session, idempotency keys, restored histories) runs the sync code on the store's
worker as before.

Order: a native call first waits for the worker calls made before it
(:meth:`Worker.settled`), and every call through one session handle — native or
on the worker — holds that handle's lock, so a session's calls run in the order
they were made while different sessions run concurrently.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..backends.tenant import TenantBackend, viewed
from ..backends.tenant_aio import AsyncTenantBackend
from ..core import Core, layout
from ..core.sealed import SealedBackend
from ..core.chained import ChainedBackend
from ..core.keyring import Keyring
from ..core.chained_aio import AsyncChainedBackend, Offload
from ..core.sealed_aio import AsyncSealedBackend
from ..core.session_write import (RENEW_FACTOR, Committed, SessionCore, SessionWrites, merge_index, plan_session_write,
                                  split_index)
from ..core.validate import check_name, check_optional_name, stored_seconds
from ..errors import ConflictError, ExpiredError
from ..features import idempotency
from ..features._duration import Duration, maybe_seconds
from ..features.sessions import Session, reopened_meta
from ..models import SessionInfo, to_datetime
from ..protocol import ANY, Backend, Expect, Op, OpResult, Put, Record
from ..protocol.aio import AsyncBackend
from ._worker import Worker

__all__ = ["ENV_NATIVE", "Drivers", "Lane", "apply_across", "commit", "commit_once", "find", "history", "info",
           "lane_for", "native_backend", "open_session"]

ENV_NATIVE = "STATEKEEL_ASYNC_NATIVE"
"""Set to 0/false/no/off to keep every async call on the worker thread (for comparisons)."""


def lane_for(store: Core, worker: Worker, drivers: Drivers) -> Lane | None:
    """The native lane of ``store`` (or of a tenant's view of it): its asyncio driver (PostgreSQL,
    Redis) under the store's encryption and chain, or group commit through the worker (SQLite,
    files); None when every call must stay on the worker. ``drivers``: where the drivers are
    made, once per sync backend, and closed with the AsyncStore that owns them."""
    if _switched_off():
        return None
    offload: Offload = lambda fn: worker.run(fn, tracked=False)  # the rare blocking reads
    keyring = store.keyring if isinstance(store.keyring, Keyring) else None  # a tenant's: its own keys only
    native = _async_of(store.backend, keyring, offload, drivers)
    if native is not None:
        return Lane(native, worker)
    grouped = _grouped(store, worker, drivers)
    return None if grouped is None else Lane(grouped, worker, reads=False)


GROUPED = ("SQLiteBackend", "FilesBackend")
"""Backends whose concurrent session writes the async API commits together (one fsync)."""


class Drivers:
    """The asyncio backends an :class:`~statekeel.aio.AsyncStore` made, shared with the tenant
    views opened from it: one per sync backend (the store's; on PostgreSQL each tenant's own
    pool), so that a handler opening ``store.tenant(t)`` per request reuses them, all closed
    when the store is."""

    def __init__(self) -> None:
        self._made: dict[int, tuple[Backend, AsyncBackend]] = {}
        self._closed = False

    def of(self, backend: Backend, make: Callable[[], AsyncBackend | None]) -> AsyncBackend | None:
        """``backend``'s asyncio backend: made by ``make`` the first time (None: it has none, or
        the store is closed — its calls then go to the closed worker, which says so)."""
        if self._closed:
            return None
        got = self._made.get(id(backend))
        if got is not None and got[0] is backend:
            return got[1]
        made = make()
        if made is not None:
            self._made[id(backend)] = (backend, made)
        return made

    async def aclose(self) -> None:
        self._closed = True
        made, self._made = list(self._made.values()), {}
        for _, backend in made:
            await backend.aclose()


def plain_store(store: Core) -> bool:
    """No encryption, no chain, no tenant view beneath the store, and the switch not off."""
    if _switched_off():
        return False
    return store.keyring is None and store.backend is store.storage


def native_backend(store: Core) -> AsyncBackend | None:
    """A new native asyncio backend for a plain PostgreSQL or Redis store (the caller closes
    it), or None; the asyncio API itself uses :func:`lane_for`."""
    if not plain_store(store):
        return None
    return _driver(store.backend, None)


def _async_of(backend: Backend, keyring: Keyring | None, offload: Offload, drivers: Drivers) -> AsyncBackend | None:
    """``backend`` (a store's ``Core.backend``) on the asyncio driver beneath it: the chain, the
    sealing and a tenant's view each as its asyncio twin, or None when the driver has none (or
    the store was opened without its key)."""
    kind = type(backend)
    if kind is ChainedBackend:
        assert isinstance(backend, ChainedBackend)
        below = _async_of(backend.storage, keyring, offload, drivers)
        return None if below is None else AsyncChainedBackend(below, backend, offload)
    if kind is SealedBackend:
        assert isinstance(backend, SealedBackend)
        if keyring is None or backend.locked:
            return None
        below = _async_of(backend.storage, keyring, offload, drivers)
        return None if below is None else AsyncSealedBackend(below, backend, keyring, offload)
    if kind is TenantBackend:
        assert isinstance(backend, TenantBackend)
        driver = _driver(viewed(backend), drivers)
        return None if driver is None else AsyncTenantBackend(driver, backend)
    return _driver(backend, drivers)


def _grouped(store: Core, worker: Worker, drivers: Drivers) -> AsyncBackend | None:
    """Group commit for a plain SQLite or files store, or a tenant's view of one (its batches
    are committed together with the store's and every other tenant's)."""
    if not plain_store(store):
        return None
    view = store.backend if type(store.backend) is TenantBackend else None
    below = store.backend if view is None else viewed(view)
    if type(below).__name__ not in GROUPED or below.batch_scope != "store":
        return None
    from ._group import GroupBackend

    group = drivers.of(below, lambda: GroupBackend(below, worker, store.stats))
    if group is None:  # the store is closed: its calls go to the closed worker, which says so
        return None
    return group if view is None else AsyncTenantBackend(group, view)


def _switched_off() -> bool:
    return os.environ.get(ENV_NATIVE, "").strip().lower() in ("0", "false", "no", "off")


def _driver(backend: Backend, drivers: Drivers | None) -> AsyncBackend | None:
    """The asyncio driver's backend beside ``backend`` (exactly PostgreSQL or Redis), or None;
    made once per backend in ``drivers`` (None: a new one)."""
    make = _maker(backend)
    if make is None:
        return None
    return make() if drivers is None else drivers.of(backend, make)


def _maker(backend: Backend) -> Callable[[], AsyncBackend] | None:
    # a backend's module is imported when one of its stores is open: look there, so a Redis store
    # does not import psycopg (nor a PostgreSQL store redis-py) just to be told apart
    if "statekeel.backends.postgres.backend" in sys.modules:
        from ..backends.postgres.backend import PostgresBackend

        if type(backend) is PostgresBackend:
            from ..backends.postgres.aio import AsyncPostgresBackend

            return functools.partial(AsyncPostgresBackend, backend)
    if "statekeel.backends.redis.backend" in sys.modules:
        from ..backends.redis.backend import RedisBackend

        if type(backend) is RedisBackend:
            from ..backends.redis.aio import AsyncRedisBackend

            return functools.partial(AsyncRedisBackend, backend)
    return None


@dataclass(frozen=True)
class Lane:
    """What a native call needs: the async backend, the store's worker (for order and
    fallbacks) and, for a session handle, the lock that keeps its calls in order."""

    backend: AsyncBackend
    worker: Worker
    lock: asyncio.Lock | None = None
    reads: bool = True
    """False for a :class:`~statekeel.aio._group.GroupBackend` (SQLite, files): its reads are
    worker hops anyway, so calls that read run the sync call on the worker — one hop, not several."""

    def of_session(self, lock: asyncio.Lock) -> Lane:
        return Lane(self.backend, self.worker, lock, self.reads)

    @property
    def reader(self) -> Lane | None:
        """This lane if reading calls run natively on it, else None (they keep the worker)."""
        return self if self.reads else None

    def turn(self) -> _Turn:
        """This call's turn (``async with lane.turn():``): after the worker calls made before it,
        holding the session's lock."""
        return _Turn(self.worker, self.lock)


class _Turn:
    """:meth:`Lane.turn` as a plain async context manager (a generator-based one costs a few µs
    a call, and every native call takes a turn)."""

    __slots__ = ("_lock", "_worker")

    def __init__(self, worker: Worker, lock: asyncio.Lock | None) -> None:
        self._worker = worker
        self._lock = lock

    async def __aenter__(self) -> None:
        await self._worker.settled()
        if self._lock is not None:
            await self._lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.release()


# -- the write path ---------------------------------------------------------------------
async def apply_across(backend: AsyncBackend, ops: Sequence[Op]) -> list[OpResult]:
    """:func:`~statekeel.core.session_write.apply_across_partitions`, awaited: index ops first,
    on their own, where a batch must stay inside one partition."""
    if backend.batch_scope == "store":
        return await backend.apply(ops)
    split = split_index(ops)
    if split is None:
        return await backend.apply(ops)
    index, rest, outside = split
    await backend.apply(index)
    return merge_index(outside, await backend.apply(rest))


def plain(sc: SessionCore) -> bool:
    """True when a write of ``sc`` is just its plan (no lease fence, no one-off reactivation)."""
    return sc.fence is None and sc.once is None


async def commit(backend: AsyncBackend, sc: SessionCore, writes: SessionWrites) -> Committed:
    """:meth:`SessionCore.commit` for a :func:`plain` handle: the same plan, applied natively."""
    now = time.time()
    if sc.ttl is not None and sc.expires_at is not None and sc.expires_at <= now:
        rec = await backend.get(sc.keys.meta)
        if rec is None:
            raise ExpiredError(f"session {sc.id!r} expired (ttl {sc.ttl}s); open it again with store.session()")
        sc.expires_at = rec.expires_at
    if not sc.activity:
        writes = SessionWrites(writes.messages, writes.puts, writes.deletes, writes.extra, False)
    plan = plan_session_write(sc.keys, sc.ttl, sc.expires_at, now, writes, sc.core.codec, renew=sc.activity)
    results = await apply_across(backend, plan.ops)
    if sc.ttl is not None:
        sc.expires_at = plan.expires
    return plan.committed(results)


async def commit_once(backend: AsyncBackend, sc: SessionCore, writes: SessionWrites, key: str) -> Committed | None:
    """:func:`~statekeel.features.idempotency.commit_once` for a :func:`plain` handle, its batch
    applied natively; None when the batch conflicted (nothing was written): the caller runs the
    sync call on the worker, which tells a used key (and replays its result) from any other
    conflict — the rare path, as a retry is."""
    with_key, _ = idempotency.keyed(sc, writes, key)
    try:
        done = await commit(backend, sc, with_key)
    except ConflictError:
        return None
    return idempotency.unkeyed(done)


# -- reads ---------------------------------------------------------------------------------
async def history(backend: AsyncBackend, session: Session, last: int | None) -> list[Any] | None:
    """``session.history(last)`` natively; None when a restore hid part of it (the worker reads it)."""
    log, view_key = session._log, layout.session_view_key(session.id)
    if last is None:  # a whole history: the view first (a restored one is read by the worker, not twice)
        if await backend.get(view_key) is not None:
            return None
        return session._core.codec.decode_many(await backend.read_values(log), log)
    (view,), items = await backend.get_many_and_values([view_key], log, limit=last, reverse=True)  # one round trip
    return None if view is not None else session._core.codec.decode_many(items, log)


async def count(backend: AsyncBackend, session: Session) -> int:
    """``len(session)``: how many messages are stored."""
    found = await backend.log_info(session._log)
    return 0 if found is None else found.last_seq - found.first_seq + 1


async def info(backend: AsyncBackend, store: Core, session_id: str, rec: Record) -> SessionInfo:
    """:func:`~statekeel.features.session_index.session_info`, its log read awaited."""
    body = store.codec.decode(rec.data, rec.codec, rec.key)
    log = await backend.log_info(layout.history_log(session_id))
    updated = max(rec.updated_at, log.updated_at) if log else rec.updated_at
    return SessionInfo(
        session_id, body.get("user"), body.get("status", "active"),
        to_datetime(rec.created_at), to_datetime(updated),  # type: ignore[arg-type]
        to_datetime(rec.expires_at), stored_seconds(body.get("ttl")),
    )


# -- opening ---------------------------------------------------------------------------------
async def open_session(
    backend: AsyncBackend, store: Core, session_id: str, user: str | None, ttl: Duration | None
) -> Session:
    """:func:`~statekeel.features.sessions.open_session` without a lease, its I/O awaited."""
    check_name(session_id, "a session id")
    check_optional_name(user, "user")
    ttl_s = maybe_seconds(ttl, "ttl")
    meta, index = layout.session_meta_key(session_id), layout.session_index_key(session_id)
    for _ in range(100):
        rec, listed = await backend.get_many([meta, index])
        try:
            if rec is None:
                body = {"user": user, "status": "active", "ttl": ttl_s}
                expires = None if ttl_s is None else time.time() + ttl_s * RENEW_FACTOR
                return Session(store, session_id, await _put_meta(backend, store, session_id, body, None, expires), None)
            return await _reopen(backend, store, session_id, rec, user, ttl_s, listed is not None)
        except ConflictError:
            continue
    raise ConflictError(meta, None, None)


async def _reopen(
    backend: AsyncBackend, store: Core, session_id: str, rec: Record, user: str | None, ttl_s: float | None,
    listed: bool,
) -> Session:  # fmt: skip
    found = await info(backend, store, session_id, rec)
    meta = reopened_meta(store, session_id, rec, found, user, ttl_s, listed)
    if meta is not None:
        rec = await _put_meta(backend, store, session_id, meta[0], rec.version, meta[1])
    s = Session(store, session_id, rec, found)
    s._arm(found.status)
    return s


async def _put_meta(
    backend: AsyncBackend, store: Core, session_id: str, body: dict[str, Any], expect: Expect,
    expires: float | None,
) -> Record:  # fmt: skip
    """:func:`~statekeel.features.session_index.put_meta`: the session record and its index entry."""
    mkey, ikey = layout.session_meta_key(session_id), layout.session_index_key(session_id)
    data, codec = store.codec.encode(body, f"session {session_id!r} metadata", mkey)
    idx_data, idx_codec = store.codec.encode({}, f"session {session_id!r} index", ikey)
    ops = [Put(mkey, data, codec, expect, expires), Put(ikey, idx_data, idx_codec, ANY, expires)]
    rec = (await apply_across(backend, ops))[0]
    assert isinstance(rec, Record)
    return rec


async def find(backend: AsyncBackend, store: Core, session_id: str) -> Session | None:
    """:func:`~statekeel.features.sessions.find_session`, awaited."""
    check_name(session_id, "a session id")
    rec = await backend.get(layout.session_meta_key(session_id))
    return None if rec is None else Session(store, session_id, rec, await info(backend, store, session_id, rec))
