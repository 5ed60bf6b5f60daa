"""AsyncSession and AsyncSessionBatch: the asyncio twins of Session and SessionBatch."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import UsageError
from ..features._duration import Duration
from ..features.checkpoints import DEFAULT_FULL_EVERY, Checkpoint, CheckpointDiff
from ..features.sessions import Session, SessionBatch
from ..models import Message, SessionInfo, SessionStatus
from ..protocol import ANY, Expect
from ._decisions import AsyncDecisionContext
from ._notes import AsyncSessionNotes
from ._state import AsyncStateView
from ._worker import Worker

__all__ = ["AsyncSession", "AsyncSessionBatch"]


class AsyncSession:
    """One conversation: history, state and status. Get it from ``await store.session(id)``."""

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
    def resumed(self) -> SessionInfo | None:
        """How the session was found when opened (None if new); see :attr:`Session.resumed`."""
        return self._session.resumed

    # -- writing -------------------------------------------------------------
    async def append(self, *messages: Any, state: Mapping[str, Any] | None = None) -> int:
        """Append ``messages`` (and write ``state``) in one atomic, durable batch.

        Returns the sequence number of the first appended message.
        """
        return await self._worker.run(lambda: self._session.append(*messages, state=state))

    def batch(self) -> AsyncSessionBatch:
        """Group appends and state writes into one atomic commit: ``async with s.batch() as b:``."""
        return AsyncSessionBatch(self._session.batch(), self._worker)

    async def heartbeat(self) -> None:
        """Record that the agent is alive (what stale detection looks at)."""
        await self._worker.run(self._session.heartbeat)

    # -- reading -------------------------------------------------------------
    async def messages(
        self, last: int | None = None, *, start: int = 1, stop: int | None = None, include_hidden: bool = False
    ) -> list[Message]:
        """History entries with sequence numbers and times, oldest first; ``last=N`` costs O(N).

        Entries hidden by :meth:`restore` are skipped unless ``include_hidden=True``.
        """
        return await self._worker.run(
            lambda: self._session.messages(last, start=start, stop=stop, include_hidden=include_hidden)
        )

    async def history(self, last: int | None = None, *, include_hidden: bool = False) -> list[Any]:
        """The appended values, oldest first; ``last=N`` costs O(N), not O(history)."""
        return await self._worker.run(lambda: self._session.history(last, include_hidden=include_hidden))

    async def count(self) -> int:
        """How many messages the history holds (``len(session)`` in the sync API)."""
        return await self._worker.run(self._session.__len__)

    async def info(self) -> SessionInfo:
        """Status, timestamps and TTL as stored now."""
        return await self._worker.run(self._session.info)

    async def is_stale(self, after: Duration) -> bool:
        """True when active but without a write or heartbeat for ``after``."""
        return await self._worker.run(lambda: self._session.is_stale(after))

    # -- status --------------------------------------------------------------
    async def set_status(self, status: SessionStatus) -> SessionInfo:
        """Set active / completed / crashed (compare-and-set on the session record)."""
        return await self._worker.run(lambda: self._session.set_status(status))

    async def complete(self) -> SessionInfo:
        """Mark the session completed."""
        return await self._worker.run(self._session.complete)

    async def mark_crashed(self) -> SessionInfo:
        """Mark the session crashed (recovery will find it)."""
        return await self._worker.run(self._session.mark_crashed)

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
    async def checkpoint(
        self, label: str | None = None, *, full_every: int = DEFAULT_FULL_EVERY, compress: str | None = None
    ) -> Checkpoint:
        """Snapshot the state and history position; stores only what changed since the last one."""
        return await self._worker.run(
            lambda: self._session.checkpoint(label, full_every=full_every, compress=compress)
        )

    async def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint of this session, oldest first."""
        return await self._worker.run(self._session.checkpoints)

    async def restore(self, cp: Checkpoint | int | str) -> Checkpoint:
        """Roll the state back to ``cp``; later history is hidden (``include_hidden=True`` shows it)."""
        return await self._worker.run(lambda: self._session.restore(cp))

    async def fork(self, cp: Checkpoint | int | str, *, into: str) -> AsyncSession:
        """A new session ``into`` holding ``cp``'s state and visible history up to it."""
        return AsyncSession(await self._worker.run(lambda: self._session.fork(cp, into=into)), self._worker)

    async def diff(self, a: Checkpoint | int | str, b: Checkpoint | int | str | None = None) -> CheckpointDiff:
        """What changed from checkpoint ``a`` to ``b`` (default: to the current state)."""
        return await self._worker.run(lambda: self._session.diff(a, b))

    async def prune_checkpoints(self, *, keep_last: int | None = None, newer_than: Duration | None = None) -> int:
        """Delete old checkpoints, keeping what is kept restorable; returns how many went."""
        return await self._worker.run(
            lambda: self._session.prune_checkpoints(keep_last=keep_last, newer_than=newer_than)
        )

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
