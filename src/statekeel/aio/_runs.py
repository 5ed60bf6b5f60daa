"""AsyncRun: the asyncio twin of ``store.run(run_id)``."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar, overload

from ..errors import UsageError
from ..features.runs import Run, RunSuspended
from ._generated import _RunForwards
from ._worker import LoopBridge, Worker

__all__ = ["AsyncRun"]

P = ParamSpec("P")
T = TypeVar("T")


class AsyncRun(_RunForwards):
    """A resumable multi-step job: ``async with store.run(run_id) as run:``.

    The run is loaded on the store's worker at the first call. ``step`` takes
    a coroutine function (awaited on the event loop) or a plain function (run
    on a helper thread, like :func:`asyncio.to_thread`); either way a finished
    step returns its stored result without running again. The plain methods
    (``wait_for``, ``info``, ``complete``, ``fail``) are generated into ``_RunForwards``.
    """

    def __init__(self, worker: Worker, run_id: str, make: Callable[[], Run]) -> None:
        self._worker = worker
        self._make = make
        self._run: Run | None = None
        self.id = run_id
        """The run id."""

    def __repr__(self) -> str:
        return f"<AsyncRun {self.id!r}>"

    def _resolve(self) -> Run:  # runs off the loop
        if self._run is None:
            self._run = self._make()
        return self._run

    @property
    def reused(self) -> list[str]:
        """Steps of this process that returned a stored result."""
        return self._run.reused if self._run else []

    @property
    def executed(self) -> list[str]:
        """Steps this process ran (or whose input it consumed) and recorded."""
        return self._run.executed if self._run else []

    @property
    def lease_token(self) -> int | None:
        """The fencing token of the run's lease this handle holds (None: no ``lease=``, or not loaded yet)."""
        return self._run.lease_token if self._run else None

    @property
    def suspended(self) -> RunSuspended | None:
        """Set when ``async with`` absorbed a :class:`RunSuspended`: the run waits for input."""
        return self._run.suspended if self._run else None

    # -- steps -----------------------------------------------------------------
    @overload
    async def step(
        self, name: str, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T: ...

    @overload
    async def step(self, name: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...

    async def step(self, name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``await fn(*args, **kwargs)`` once per run: a finished step returns its stored result.

        Cancelling the awaiting task cancels the step's coroutine; that is not
        recorded as a failed attempt.
        """
        bridge = LoopBridge()
        body = bridge.wrap(fn)
        return await bridge.run(lambda: self._resolve().step(name, body, *args, **kwargs))

    @overload
    def stepfn(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def stepfn(
        self, fn: None = None, /, *, name: str | None = None, version: str | int | None = None
    ) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Coroutine[Any, Any, T]]]: ...

    def stepfn(
        self, fn: Callable[P, Awaitable[T]] | None = None, /, *, name: str | None = None,
        version: str | int | None = None,
    ) -> Any:
        """Decorator: awaiting the function runs it as step ``name`` (default: its name);
        ``version`` as in :meth:`Run.stepfn`."""

        def wrap(f: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
            step_name = name or f.__name__
            target: Callable[..., Any] = f if version is None else _versioned(f, version)

            @functools.wraps(f)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                return await self.step(step_name, target, *args, **kwargs)

            return wrapper

        return wrap(fn) if fn is not None else wrap

    async def __aenter__(self) -> AsyncRun:
        await self._worker.run(lambda: self._resolve().__enter__())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        return await self._worker.run(lambda: self._resolve().__exit__(exc_type, exc, tb))

    if not TYPE_CHECKING:  # at runtime only, so that type checkers flag the misuse instead

        def __enter__(self) -> NoReturn:
            raise UsageError("in async code a run is used with `async with store.run(run_id) as run:`")

        def __exit__(self, *exc: object) -> None:
            return None


def _versioned(fn: Callable[..., Any], version: str | int) -> Callable[..., Any]:
    """``fn`` declaring step version ``version`` (what ``Run.step`` reads as its fingerprint's version)."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    call.__step_version__ = version  # type: ignore[attr-defined]
    return call
