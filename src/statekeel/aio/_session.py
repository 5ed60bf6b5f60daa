"""AsyncSession and AsyncSessionBatch: the asyncio twins of Session and SessionBatch."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import UsageError
from ..features._duration import Duration
from ..features.checkpoints import Checkpoint
from ..features.sessions import Session, SessionBatch
from ..models import SessionInfo
from ..protocol import ANY, Expect
from ._decisions import AsyncDecisionContext
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

    def __init__(self, session: Session, worker: Worker) -> None:
        self._session = session
        self._worker = worker
        self.state = AsyncStateView(worker, session.state.scope, session.state)
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
    def batch(self, *, idempotency_key: str | None = None) -> AsyncSessionBatch:
        """Group appends and state writes into one atomic commit: ``async with s.batch() as b:``;
        ``idempotency_key=k`` applies it at most once (see :meth:`Session.append`)."""
        return AsyncSessionBatch(self._session.batch(idempotency_key=idempotency_key), self._worker)

    # -- reading -------------------------------------------------------------
    async def count(self) -> int:
        """How many messages the history holds (``len(session)`` in the sync API)."""
        return await self._worker.run(self._session.__len__)

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
        return AsyncSession(await self._worker.run(lambda: self._session.fork(cp, into=into)), self._worker)

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

    def __init__(self, batch: SessionBatch, worker: Worker) -> None:
        self._batch = batch
        self._worker = worker

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
        await self._worker.run(lambda: self._batch.__exit__(exc_type, exc, tb))

    if not TYPE_CHECKING:  # at runtime only, so that type checkers flag the misuse instead

        def __enter__(self) -> NoReturn:
            raise UsageError("a session batch of the async API commits with `async with session.batch() as b:`")

        def __exit__(self, *exc: object) -> None:
            return None
