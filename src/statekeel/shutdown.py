"""Graceful shutdown on SIGTERM: stop new work, finish what is in flight, release leases, close.

Kubernetes stops a pod by sending SIGTERM, waiting ``terminationGracePeriodSeconds`` and then
sending SIGKILL. A killed agent loses nothing it was told was stored (every acknowledged write is
durable), but the leases it held stay taken until they expire, so the replacement pod waits for
them; and a call cut short by SIGKILL is simply not stored. :class:`GracefulShutdown` turns the
SIGTERM into an orderly stop instead::

    store = statekeel.open()
    with statekeel.GracefulShutdown(store) as stop:
        s = stop.hold(store.session("agent-1", lease="30s"))
        while not stop.requested:
            msg = next_message()
            with stop.work():                 # one unit of work: SIGTERM never lands inside it
                s.append(msg)
    # here: in-flight work finished, the session's lease released, the store closed

What happens on SIGTERM:

1. ``requested`` becomes True and ``work()`` refuses new units of work (:class:`ShutdownRequested`).
2. In the main thread, :class:`ShutdownRequested` is raised at once when no ``work()`` block is
   running there, else when the running one ends — never inside one (``interrupt=False`` only
   sets the flag, for loops that check ``requested`` themselves). The ``with`` block absorbs it.
3. Leaving the block waits for ``work()`` blocks of other threads (up to ``drain_timeout``),
   releases every handle given to :meth:`hold` (another process can take its lease at once), and
   closes the store (a backend with buffered writes flushes them when it is closed).

The signal handler only sets attributes: it takes no lock, so it cannot deadlock with the thread
it interrupts. A second SIGTERM while closing is ignored.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any, Protocol, TypeVar

from .errors import StatekeelError, UsageError

__all__ = ["GracefulShutdown", "ShutdownRequested"]

log = logging.getLogger("statekeel.shutdown")


class ShutdownRequested(BaseException):
    """The process was asked to stop (SIGTERM): no new work starts.

    A ``BaseException`` like ``KeyboardInterrupt``, so ``except Exception`` in agent code does not
    swallow it; the ``with GracefulShutdown(...)`` block absorbs it."""


class _Releasable(Protocol):
    def release(self) -> None: ...


class _Closable(Protocol):
    def close(self) -> None: ...


H = TypeVar("H", bound=_Releasable)


class GracefulShutdown:
    """Stop an agent cleanly on SIGTERM (see the module docstring for the sequence).

    ``signals``: what triggers it (default SIGTERM; add ``signal.SIGINT`` for Ctrl-C).
    ``drain_timeout``: seconds to wait for other threads' ``work()`` blocks before releasing
    leases and closing anyway; keep it below the pod's ``terminationGracePeriodSeconds``.
    ``interrupt``: raise :class:`ShutdownRequested` in the main thread (between units of work);
    False only sets ``requested``."""

    def __init__(
        self, store: _Closable, *, signals: tuple[signal.Signals, ...] = (signal.SIGTERM,),
        drain_timeout: float = 20.0, interrupt: bool = True,
    ) -> None:
        if isinstance(drain_timeout, bool) or not isinstance(drain_timeout, int | float) or not drain_timeout >= 0:
            raise UsageError(f"drain_timeout must be a number of seconds >= 0, got {drain_timeout!r}")
        self.store = store
        self.signals = signals
        self.drain_timeout = drain_timeout
        self.interrupt = interrupt
        self.unfinished = 0
        """``work()`` blocks still running when the drain timed out (0 after a clean stop)."""
        self._requested = False
        self._closing = False
        self._closed = False
        self._deferred = False
        self._main_depth = 0  # work() blocks open in the main thread; only the main thread changes it
        self._busy = 0
        self._idle = threading.Condition()
        self._held: list[_Releasable] = []
        self._previous: dict[signal.Signals, Any] = {}

    @property
    def requested(self) -> bool:
        """True once a stop was requested (signal, :meth:`request` or :meth:`close`)."""
        return self._requested

    def request(self) -> None:
        """Ask for a stop as the signal would, without raising (e.g. from an admin endpoint)."""
        self._requested = True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a stop is requested or ``timeout`` passes; returns ``requested``.

        Polls (every 50 ms) rather than waiting on a lock, which a signal handler must never touch."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._requested:
            left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if left <= 0:
                break
            time.sleep(left)
        return self._requested

    def hold(self, handle: H) -> H:
        """Release ``handle`` (a session or run opened with ``lease=``) at shutdown; returns it."""
        self._held.append(handle)
        return handle

    @contextmanager
    def work(self) -> Iterator[None]:
        """One unit of work (a turn, a step): refused once a stop is requested; a stop requested
        while it runs waits for it to end."""
        main = threading.current_thread() is threading.main_thread()
        if main:  # first: from here on a signal is deferred, never raised inside (other threads never touch it)
            self._main_depth += 1
        try:
            with self._idle:  # checked and counted together, so close() either waits for it or refused it
                if self._requested:
                    raise ShutdownRequested("the process is shutting down: no new work is started")
                self._busy += 1
            try:
                yield
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()
        finally:
            if main:
                self._main_depth -= 1
        if main and self._deferred and self._main_depth == 0 and not self._closing:
            self._deferred = False
            raise ShutdownRequested("the process is shutting down (signal received during the work)")

    def install(self) -> GracefulShutdown:
        """Install the signal handlers (main thread only); the previous ones come back on close."""
        if threading.current_thread() is not threading.main_thread():
            raise UsageError("GracefulShutdown.install() must run in the main thread (Python delivers "
                             "signals there); create it at start-up, before starting worker threads")
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._closing:
            return
        self._requested = True
        if not self.interrupt:
            return
        if self._main_depth:
            self._deferred = True  # raised when the main thread's work() block ends
            return
        raise ShutdownRequested(f"received {signal.Signals(signum).name}")

    def close(self) -> None:
        """Stop: wait for in-flight work, release held leases, close the store. Idempotent."""
        if self._closed:
            return
        with self._idle:  # under the lock: a work() block either started before this or is refused
            self._closing = self._requested = True
        try:
            self._drain()
            for handle in reversed(self._held):
                self._release(handle)
            self._held.clear()
            self.store.close()  # may raise (a write-behind flush that failed): the caller must know
        finally:
            self._closed = True
            self._restore_handlers()

    def _drain(self) -> None:
        """Wait for other threads' work() blocks (the caller's own open blocks are not waited for)."""
        own = self._main_depth if threading.current_thread() is threading.main_thread() else 0
        deadline = time.monotonic() + self.drain_timeout
        with self._idle:
            while self._busy > own and (left := deadline - time.monotonic()) > 0:
                self._idle.wait(left)
            self.unfinished = self._busy - own
        if self.unfinished:
            log.warning("statekeel: %d unit(s) of work still running after %.1fs; releasing leases and "
                        "closing anyway (their writes after this point fail)", self.unfinished, self.drain_timeout)

    @staticmethod
    def _release(handle: _Releasable) -> None:
        try:
            handle.release()
        except StatekeelError as exc:  # the server is down, say: the lease expires on its own
            log.warning("statekeel: could not release %r at shutdown (%s); it expires on its own", handle, exc)

    def _restore_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal.signal() works only there; the handlers stay (they ignore a closed stop)
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def __enter__(self) -> GracefulShutdown:
        return self.install()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        self.close()
        return exc_type is not None and issubclass(exc_type, ShutdownRequested)
