"""The worker that runs a store's blocking calls off the event loop, in order."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import copy
import functools
import inspect
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..core.validate import short_repr
from ..errors import InvalidInputError, UsageError

__all__ = ["Worker", "LoopBridge", "running_loop", "check_threads", "NO_LOOP", "CLOSED"]

T = TypeVar("T")

NO_LOOP = (
    "the statekeel async API needs a running asyncio event loop (await it inside "
    "`async def` code run by asyncio.run(...) or your framework); in sync code use the "
    "sync API instead: `store = statekeel.open(url)` and `store.session(...)`"
)

CLOSED = "this AsyncStore is closed; open another with `await statekeel.open_async(url)`"


def running_loop() -> asyncio.AbstractEventLoop:
    """The running loop, or :class:`UsageError` saying to use the sync API."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise UsageError(NO_LOOP) from None


MAX_THREADS = 1024
"""Most worker threads: each blocks on one database connection (PostgreSQL's pool holds at most
10,000, and a few dozen already saturate a server); ``workers=2**64`` is a typo, not a plan."""


def check_threads(threads: int) -> int:
    """``threads`` if it is a valid worker count (1 to :data:`MAX_THREADS`), else :class:`InvalidInputError`."""
    if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= MAX_THREADS:
        raise InvalidInputError(f"workers must be an int from 1 to {MAX_THREADS}, got {short_repr(threads)}")
    return threads


class _Shared:
    """What a worker and its ordered views share: the threads, the closed flag, the last call."""

    def __init__(self, threads: int) -> None:
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="statekeel-aio")
        self.closed = False
        self.last: asyncio.Future[Any] | None = None


class Worker:
    """Runs sync store calls on its own threads; with one thread, in call order.

    Each call runs in a copy of the caller's ``contextvars`` context, like
    :func:`asyncio.to_thread`. Threads run no event loop, so the loop guard
    lets the sync code through. On a backend with a native asyncio driver the
    hot paths skip the worker (:mod:`statekeel.aio._native`); :meth:`settled`
    and :meth:`in_order` keep those calls in order with the worker's.
    """

    def __init__(self, threads: int = 1) -> None:
        self.threads = check_threads(threads)
        self._shared = _Shared(threads)
        self._executor = self._shared.executor
        self._lock: asyncio.Lock | None = None

    @property
    def closed(self) -> bool:
        """True once the store was closed: calls are refused."""
        return self._shared.closed

    @closed.setter
    def closed(self, value: bool) -> None:
        self._shared.closed = value

    def in_order(self, lock: asyncio.Lock) -> Worker:
        """This worker, with every call also holding ``lock`` (one session handle's calls,
        native or not, run in the order they were made)."""
        view = copy.copy(self)
        view._lock = lock
        return view

    async def settled(self) -> None:
        """Refuse when closed; else wait (without raising their errors) for the worker calls
        made before this one — a native call never overtakes an earlier worker call."""
        if self._shared.closed:
            raise UsageError(CLOSED)
        last = self._shared.last
        if last is not None and not last.done():
            await asyncio.wait([last])

    async def run(self, fn: Callable[[], T], *, tracked: bool = True) -> T:
        """Run ``fn()`` on a worker thread and return (or raise) what it did.

        ``tracked=False``: :meth:`settled` does not wait for it (the group commits of
        :mod:`statekeel.aio._group`, which native calls queue into while one runs)."""
        if self._lock is None:
            return await self._submit(fn, tracked)
        async with self._lock:
            return await self._submit(fn, tracked)

    async def _submit(self, fn: Callable[[], T], tracked: bool) -> T:
        loop = running_loop()
        call = functools.partial(contextvars.copy_context().run, fn)
        if self.closed:
            raise UsageError(CLOSED)
        try:
            future = loop.run_in_executor(self._executor, call)
        except RuntimeError:  # the executor shut down between the check and the submit
            raise UsageError(CLOSED) from None
        if tracked:
            self._shared.last = future
        return await future

    async def iterate(self, make: Callable[[], Iterable[T]], chunk: int = 500) -> AsyncIterator[T]:
        """Drive a sync iterator on the worker, ``chunk`` items per hop."""
        it: Iterator[T] = await self.run(lambda: iter(make()))
        while True:
            part = await self.run(lambda: list(itertools.islice(it, chunk)))
            for value in part:
                yield value
            if len(part) < chunk:
                return

    def shutdown(self) -> None:
        """Refuse new calls; wait for the ones already submitted (blocking)."""
        self.closed = True
        self._executor.shutdown(wait=True)


class _Cancelled(BaseException):
    """The awaiting task was cancelled; a BaseException, so no feature records it as a failure."""


class LoopBridge:
    """Runs sync feature code on a helper thread; callbacks it calls may be async.

    For features that call user functions (``run.step(name, fn)``): the sync
    feature runs on a helper thread — not the store's worker, so the callback
    may use the store — and a callback that returns an awaitable is awaited
    back on the event loop while the helper thread waits for it.
    """

    def __init__(self) -> None:
        self._loop = running_loop()
        self._pending: set[concurrent.futures.Future[Any]] = set()

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` as a plain function that runs coroutines it returns on the loop."""

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            value = fn(*args, **kwargs)
            if not inspect.isawaitable(value):
                return value
            future = asyncio.run_coroutine_threadsafe(_awaited(value), self._loop)
            self._pending.add(future)
            try:
                return future.result()
            except concurrent.futures.CancelledError:
                raise _Cancelled() from None
            finally:
                self._pending.discard(future)

        return call

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` on a helper thread; cancelling this cancels the callback it awaits."""
        call = functools.partial(contextvars.copy_context().run, fn)
        future = self._loop.run_in_executor(None, call)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            for pending in list(self._pending):
                pending.cancel()
            future.add_done_callback(_retrieve)
            raise


async def _awaited(value: Awaitable[T]) -> T:
    return await value


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # consumed: the caller was cancelled and is gone
