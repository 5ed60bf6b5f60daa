"""AsyncEventStream and AsyncConsumer: the asyncio twins of ``store.events(name)``."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from ..errors import InvalidInputError, UsageError
from ..features.events import Consumer, Event, EventStream, Projection
from . import _native
from ._generated import _ConsumerForwards, _EventStreamForwards
from ._worker import Worker

__all__ = ["AsyncEventStream", "AsyncConsumer"]

S = TypeVar("S")


def _plain(fn: Callable[..., Any], what: str) -> None:
    if inspect.iscoroutinefunction(fn):
        raise InvalidInputError(
            f"{what} takes a plain function (it runs on a worker thread, once per event); "
            "fold synchronously and do async work on the result"
        )


class AsyncEventStream(_EventStreamForwards):
    """An append-only stream of typed events. Get it from ``store.events(name)`` (no await).

    The plain methods (``get``, ``read``, ``seq_at``) are generated into
    ``_EventStreamForwards`` (they run on the store's worker); what is written here wraps or
    checks something. On PostgreSQL and Redis ``append``/``append_many`` run on the native
    driver (:mod:`statekeel.aio._native`); this handle's calls run in the order they were made.
    """

    def __init__(self, stream: EventStream, worker: Worker, lane: _native.Lane | None = None) -> None:
        self._stream = stream
        lock = asyncio.Lock()  # this handle's calls, native or on the worker, run in call order
        self._worker = worker.in_order(lock)
        self._lane = None if lane is None else lane.of_session(lock).reader
        """The native lane (PostgreSQL, Redis): appends run on it, with no thread hop."""

    def __repr__(self) -> str:
        return f"<AsyncEventStream {self.name!r}>"

    @property
    def name(self) -> str:
        """The stream's name."""
        return self._stream.name

    @property
    def sync(self) -> EventStream:
        """The sync :class:`EventStream` underneath (use it only off the event loop)."""
        return self._stream

    # -- writing -------------------------------------------------------------
    async def append(self, type: str, data: Any = None, *, agent: str | None = None) -> Event:  # noqa: A002
        """Append one event durably; returns it with its seq."""
        return (await self.append_many([(type, data)], agent=agent))[0]

    async def append_many(self, events: Iterable[tuple[str, Any]], *, agent: str | None = None) -> list[Event]:
        """Append ``(type, data)`` pairs in one atomic batch; their seqs are consecutive."""
        pairs = list(events)
        lane = self._lane
        if lane is None:
            return await self._worker.run(lambda: self._stream.append_many(pairs, agent=agent))
        stream = self._stream
        append, now = stream._append_op(pairs, agent), time.time()  # the sync code's checks and encoding
        async with lane.turn():
            first = (await lane.backend.apply([append], now=now))[0]
        assert isinstance(first, int)
        return stream._appended(append, first, now)

    # -- reading -------------------------------------------------------------
    async def last_seq(self) -> int:
        """The seq of the newest event (0 when the stream is empty); a property in the sync API."""
        return await self._worker.run(lambda: self._stream.last_seq)

    async def count(self) -> int:
        """How many events the stream holds (``len(stream)`` in the sync API)."""
        return await self._worker.run(self._stream.__len__)

    async def iter(
        self,
        start: int = 1,
        stop: int | None = None,
        *,
        type: str | Iterable[str] | None = None,  # noqa: A002
        since: dt.datetime | float | None = None,
        until: dt.datetime | float | None = None,
    ) -> AsyncIterator[Event]:
        """Like :meth:`read`, lazily, a page at a time: ``async for event in stream.iter():``."""
        def make() -> Iterable[Event]:
            return self._stream.iter(start, stop, type=type, since=since, until=until)

        async for event in self._worker.iterate(make):
            yield event

    # -- projections ---------------------------------------------------------
    async def project(
        self,
        fn: Callable[[S, Event], S],
        initial: S | None = None,
        *,
        snapshot_every: int | None = 1000,
        name: str | None = None,
        version: int = 1,
        as_of: int | None = None,
        at: dt.datetime | float | None = None,
        keep_snapshots: int = 3,
    ) -> S:
        """The state after folding every event (see :meth:`EventStream.project`)."""
        projection = await self.projection(
            fn, initial, snapshot_every=snapshot_every, name=name, version=version,
            as_of=as_of, at=at, keep_snapshots=keep_snapshots,
        )
        return projection.state

    async def projection(
        self,
        fn: Callable[[S, Event], S],
        initial: S | None = None,
        *,
        snapshot_every: int | None = 1000,
        name: str | None = None,
        version: int = 1,
        as_of: int | None = None,
        at: dt.datetime | float | None = None,
        keep_snapshots: int = 3,
    ) -> Projection[S]:
        """Fold events with ``state = fn(state, event)`` from the latest snapshot; ``fn`` is a
        plain function run on the store's worker (see :meth:`EventStream.projection`)."""
        _plain(fn, "projection()")
        return await self._worker.run(
            lambda: self._stream.projection(
                fn, initial, snapshot_every=snapshot_every, name=name, version=version,
                as_of=as_of, at=at, keep_snapshots=keep_snapshots,
            )
        )

    # -- consumers -----------------------------------------------------------
    def consumer(self, name: str) -> AsyncConsumer:
        """A named reader whose acknowledged position is stored (shared by every process)."""
        return AsyncConsumer(self._stream.consumer(name), self)

    if not TYPE_CHECKING:  # at runtime only, so that type checkers flag the misuse instead

        def __len__(self) -> NoReturn:
            raise UsageError("len(stream) cannot be awaited; use `await stream.count()`")

    def __bool__(self) -> bool:
        return True


class AsyncConsumer(_ConsumerForwards):
    """A named position in a stream: ``await poll()`` new events, ``await ack()`` handled ones.

    ``poll``, ``ack`` and ``seek`` are generated into ``_ConsumerForwards``.
    """

    def __init__(self, consumer: Consumer, stream: AsyncEventStream) -> None:
        self._consumer = consumer
        self._worker = stream._worker
        self.stream = stream
        """The stream it reads."""

    def __repr__(self) -> str:
        return f"<AsyncConsumer {self.name!r} of {self.stream.name!r}>"

    @property
    def name(self) -> str:
        """The consumer's name."""
        return self._consumer.name

    async def position(self) -> int:
        """The last acknowledged seq (0: nothing yet); a property in the sync API."""
        return await self._worker.run(lambda: self._consumer.position)

    async def lag(self) -> int:
        """How many events are after the acknowledged position; a property in the sync API."""
        return await self._worker.run(lambda: self._consumer.lag)
