"""AsyncSession and AsyncSessionBatch: the asyncio twins of Session and SessionBatch."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

from ..core.session_write import SessionWrites
from ..core.validate import check_int
from ..errors import ExpiredError, InvalidInputError, UsageError
from ..features._duration import Duration
from ..features.checkpoints import Checkpoint
from ..features.sessions import Session, SessionBatch
from ..models import SessionInfo
from ..protocol import ANY, Expect
from ._decisions import AsyncDecisionContext
from . import _native
from ._generated import _SessionForwards
from ._notes import AsyncSessionNotes
from ._state import AsyncStateView
from ._worker import Worker

__all__ = ["AsyncSession", "AsyncSessionBatch"]


class AsyncSession(_SessionForwards):
    """One conversation: history, state and status. Get it from ``await store.session(id)``.

    The plain methods (``append``, ``history``, ``checkpoint``, ...) are generated
    into ``_SessionForwards``; what is written here wraps or manages something.
    """

    def __init__(self, session: Session, worker: Worker, lane: _native.Lane | None = None) -> None:
        self._session = session
        lock = asyncio.Lock()  # this handle's calls, native or on the worker, run in call order
        self._worker = worker.in_order(lock)
        self._lane = None if lane is None else lane.of_session(lock)
        self.state = AsyncStateView(self._worker, session.state.scope, session.state, self._lane)
        """Session-scoped state; writes renew the session's TTL and heartbeat."""

    def __repr__(self) -> str:
        return f"<AsyncSession {self.id!r} user={self.user!r}>"

    @property
    def sync(self) -> Session:
        """The sync :class:`Session` underneath (use it only off the event loop)."""
        return self._session

    @property
    def id(self) -> str:
        """The session id."""
        return self._session.id

    @property
    def user(self) -> str | None:
        """The user the session belongs to, if any."""
        return self._session.user

    @property
    def ttl(self) -> float | None:
        """Seconds of inactivity after which the session expires; None = never."""
        return self._session.ttl

    @property
    def lease_token(self) -> int | None:
        """The fencing token of the lease this handle holds (None: opened without ``lease=``)."""
        return self._session.lease_token

    @property
    def resumed(self) -> SessionInfo | None:
        """How the session was found when opened (None if new); see :attr:`Session.resumed`."""
        return self._session.resumed

    # -- writing -------------------------------------------------------------
    async def append(
        self, *messages: Any, state: Mapping[str, Any] | None = None, idempotency_key: str | None = None
    ) -> int:
        """Append ``messages`` (and write ``state``) in one atomic, durable batch.

        Returns the sequence number of the first appended message. With
        ``idempotency_key=k`` the write is applied at most once within 24 hours:
        retrying it (after an :class:`UnavailableError`, say) returns the original
        seq and writes nothing (:mod:`statekeel.features.idempotency`).
        """
        lane = self._lane
        if lane is None:
            return await self._worker.run(
                lambda: self._session.append(*messages, state=state, idempotency_key=idempotency_key)
            )
        if state is not None and type(state) is not dict and not isinstance(state, Mapping):
            raise InvalidInputError(
                f"state= must be a mapping of state keys to values, got {type(state).__name__}"
            )
        if not messages and not state:
            raise InvalidInputError("append() needs at least one message (or state=)")
        writes = SessionWrites(list(messages), [(k, v, ANY, None) for k, v in (state or {}).items()])
        first = await self._commit(
            lane, writes, lambda: self._session.append(*messages, state=state, idempotency_key=idempotency_key),
            idempotency_key,
        )  # fmt: skip
        return first or 0

    async def heartbeat(self) -> None:
        """Record that the agent is alive (what stale detection looks at)."""
        if self._lane is None:
            return await self._worker.run(self._session.heartbeat)
        await self._commit(self._lane, SessionWrites(), self._session.heartbeat)

    async def _commit(self, lane: _native.Lane, writes: SessionWrites, on_worker: Any, key: str | None = None) -> Any:
        """Commit ``writes`` natively (applied at most once per idempotency ``key``), or run
        ``on_worker`` (the sync call) when the handle needs more than its plan (a lease's fence,
        a one-off reactivation) or a keyed batch conflicted (the key used already, or not)."""
        async with lane.turn():
            sc = self._session._sc
            if not _native.plain(sc):
                return await lane.worker.run(on_worker)
            if key is None:
                return (await _native.commit(lane.backend, sc, writes)).first_seq
            done = await _native.commit_once(lane.backend, sc, writes, key)
            return await lane.worker.run(on_worker) if done is None else done.first_seq

    def batch(self, *, idempotency_key: str | None = None) -> AsyncSessionBatch:
        """Group appends and state writes into one atomic commit: ``async with s.batch() as b:``;
        ``idempotency_key=k`` applies it at most once (see :meth:`Session.append`)."""
        return AsyncSessionBatch(self._session.batch(idempotency_key=idempotency_key), self._worker, self)

    # -- reading -------------------------------------------------------------
    async def history(self, last: int | None = None, *, include_hidden: bool = False) -> list[Any]:
        """The appended values, oldest first; ``last=N`` costs O(N), not O(history)."""
        lane = None if self._lane is None else self._lane.reader
        if lane is None or include_hidden:
            return await self._worker.run(lambda: self._session.history(last, include_hidden=include_hidden))
        if last is not None and check_int(last, "last") == 0:
            return []
        async with lane.turn():
            found = await _native.history(lane.backend, self._session, last)
            if found is None:  # a restore hid part of it: the sync code skips those ranges
                return await lane.worker.run(lambda: self._session.history(last))
            return found

    async def count(self) -> int:
        """How many messages the history holds (``len(session)`` in the sync API)."""
        lane = None if self._lane is None else self._lane.reader
        if lane is None:
            return await self._worker.run(self._session.__len__)
        async with lane.turn():
            return await _native.count(lane.backend, self._session)

    async def info(self) -> SessionInfo:
        """Status, timestamps and TTL as stored now."""
        lane = None if self._lane is None else self._lane.reader
        if lane is None:
            return await self._worker.run(self._session.info)
        async with lane.turn():
            rec = await lane.backend.get(self._session._sc.keys.meta)
            if rec is None:
                raise ExpiredError(f"session {self.id!r} no longer exists (expired or deleted)")
            return await _native.info(lane.backend, self._session._core, self.id, rec)

    # -- decisions and notes ----------------------------------------------------
    def decide(self, decision: str, *, rationale: str | None = None, action: Any = None) -> AsyncDecisionContext:
        """``async with s.decide(...) as d:`` records the decision durably before the block
        runs and its outcome (or error) when the block ends."""
        return AsyncDecisionContext(
            self._session.decide(decision, rationale=rationale, action=action), self._worker
        )

    @property
    def notes(self) -> AsyncSessionNotes:
        """Stamped notes left in this session by other processes, read with a staleness limit."""
        return AsyncSessionNotes(self._session.notes, self._worker)

    # -- checkpoints -----------------------------------------------------------
    async def fork(self, cp: Checkpoint | int | str, *, into: str) -> AsyncSession:
        """A new session ``into`` holding ``cp``'s state and visible history up to it."""
        forked = await self._worker.run(lambda: self._session.fork(cp, into=into))
        return AsyncSession(forked, self._worker, self._lane)

    # -- sync spellings that cannot be awaited (runtime only: type checkers flag them)
    if not TYPE_CHECKING:

        def __len__(self) -> NoReturn:
            raise UsageError("len(session) cannot be awaited; use `await session.count()`")

    def __bool__(self) -> bool:  # without it, `if session:` would call __len__
        return True


class AsyncSessionBatch:
    """Collects appends and state writes; commits them atomically when the block exits.

    ``append``/``put``/``delete`` only collect (no I/O, no await); the commit
    is awaited by ``async with``. An exception in the block writes nothing.
    """

    def __init__(self, batch: SessionBatch, worker: Worker, session: AsyncSession | None = None) -> None:
        self._batch = batch
        self._worker = worker
        self._session = session

    @property
    def first_seq(self) -> int | None:
        """After the block: the sequence number of the first appended message."""
        return self._batch.first_seq

    def append(self, *messages: Any) -> None:
        """Add messages to the commit."""
        self._batch.append(*messages)

    def put(self, key: str, value: Any, *, expect: Expect = ANY, ttl: Duration | None = None) -> None:
        """Add a state write to the commit."""
        self._batch.put(key, value, expect=expect, ttl=ttl)

    def delete(self, key: str, *, expect: Expect = ANY) -> None:
        """Add a state delete to the commit."""
        self._batch.delete(key, expect=expect)

    async def __aenter__(self) -> AsyncSessionBatch:
        self._batch.__enter__()  # only collects: no I/O (the loop guard would say otherwise)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        session, batch = self._session, self._batch
        if session is None or session._lane is None or exc_type is not None:
            await self._worker.run(lambda: batch.__exit__(exc_type, exc, tb))
            return
        def on_worker() -> int | None:
            batch.__exit__(None, None, None)
            return batch.first_seq

        batch.first_seq = await session._commit(session._lane, batch._writes, on_worker, batch._key)

    if not TYPE_CHECKING:  # at runtime only, so that type checkers flag the misuse instead

        def __enter__(self) -> NoReturn:
            raise UsageError("a session batch of the async API commits with `async with session.batch() as b:`")

        def __exit__(self, *exc: object) -> None:
            return None
