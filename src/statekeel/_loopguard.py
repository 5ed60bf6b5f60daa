"""The event-loop guard: blocking calls refuse to run on an asyncio loop's thread.

Every blocking thing a store does goes through its backend, so the guard sits
there, in one place: :func:`guard_backend` shadows each I/O method of the
backend protocol on the backend *instance* with a wrapper that first asks
``asyncio._get_running_loop()`` (a C call, about 50 ns) whether this thread is
running an event loop. If it is, the call would stall every other task, so it
raises :class:`~statekeel.errors.UsageError` naming the call and its async
twin. The async API (:mod:`statekeel.aio`) runs the same sync code on worker
threads, which run no loop, so it passes.

Not guarded: ``close()`` (refusing to clean up would only leak) and the
``temp`` scope (in-process dicts, never blocking).

Escape hatch, e.g. for notebooks where a loop always runs:
``statekeel.open(url, allow_in_event_loop=True)`` or ``STATEKEEL_ALLOW_IN_EVENT_LOOP=1``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

from .errors import UsageError
from .protocol import Backend

__all__ = ["ENV_ALLOW", "allowed", "blocking_error", "guard_backend", "refuse_in_event_loop", "twin_of"]

def _get_running_loop() -> object | None:
    """This thread's running asyncio loop, or None. asyncio is not imported for it (about 30 ms
    of a process's start that never uses it): no loop can run before asyncio is imported."""
    events = sys.modules.get("asyncio.events")
    return None if events is None else events._get_running_loop()


ENV_ALLOW = "STATEKEEL_ALLOW_IN_EVENT_LOOP"
"""Set to 1/true/yes to let every store block inside a running event loop."""

NOT_GUARDED = frozenset({"close"})

GUARDED: tuple[str, ...] = tuple(
    sorted(
        name for name, value in vars(Backend).items()
        if callable(value) and not name.startswith("_") and name not in NOT_GUARDED
    )
)
"""The backend protocol's I/O methods (read when this module loads, so new ones join)."""

_MARK = "_statekeel_loop_guard"
F = TypeVar("F", bound=Callable[..., Any])


def allowed(allow_in_event_loop: bool = False) -> bool:
    """True when blocking inside a running loop was allowed by argument or environment."""
    if allow_in_event_loop:
        return True
    return os.environ.get(ENV_ALLOW, "").strip().lower() in ("1", "true", "yes", "on")


def refuse_in_event_loop(what: str, allow_in_event_loop: bool = False) -> None:
    """Raise :class:`UsageError` if this thread runs an event loop (unless allowed)."""
    if _get_running_loop() is not None and not allowed(allow_in_event_loop):
        raise blocking_error(what, None)


def guard_backend(backend: Backend, *, allow_in_event_loop: bool = False) -> None:
    """Make ``backend``'s I/O methods refuse to run on an event loop's thread. Idempotent."""
    if allowed(allow_in_event_loop) or getattr(backend, _MARK, False):
        return
    for name in GUARDED:
        setattr(backend, name, _guarded(getattr(backend, name), backend.url))
    setattr(backend, _MARK, True)


def _guarded(method: F, url: str) -> F:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if _get_running_loop() is not None:
            raise blocking_error(_entry_point(sys._getframe(1)) or method.__qualname__, url)
        return method(*args, **kwargs)

    # what functools.wraps would copy that anyone reads, set directly: a tenant handle guards its
    # view's methods each time it is opened, and wraps' generic copying was most of that cost
    guarded.__wrapped__ = method  # type: ignore[attr-defined]
    guarded.__name__, guarded.__qualname__, guarded.__doc__ = method.__name__, method.__qualname__, method.__doc__
    return guarded  # type: ignore[return-value]


def _entry_point(frame: FrameType | None) -> str | None:
    """The statekeel function the caller's code called (outermost statekeel frame)."""
    entry: FrameType | None = None
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if not module.startswith("statekeel.") or module.startswith("statekeel.testing"):
            break
        entry, frame = frame, frame.f_back
    return entry.f_code.co_qualname if entry is not None else None


def blocking_error(what: str | None, url: str | None) -> UsageError:
    """The error for a blocking call made on an event loop's thread, with what to use."""
    name = f"{what}()" if what and not what.endswith(")") else (what or "a blocking statekeel call")
    io = f" on {url}" if url else ""
    twin = twin_of(what)
    opened = "`store = await statekeel.open_async(url)`"
    instead = opened if twin is None or twin.startswith("store = ") else f"`{twin}` on a store from {opened}"
    return UsageError(
        f"{name} was called inside a running asyncio event loop, where its blocking I/O{io} "
        f"would stall every other task. Use the async API instead: {instead} (e.g. "
        "`s = await store.session(id)`, then `await s.append(...)`), or run the sync call in a "
        "thread: `await asyncio.to_thread(...)`. In a notebook, where a loop always runs, open "
        f"with `statekeel.open(url, allow_in_event_loop=True)` or set {ENV_ALLOW}=1."
    )


def twin_of(qualname: str | None) -> str | None:
    """``'Session.append'`` -> ``'await session.append(...)'``; None if unknown.

    The map is generated from the sync classes and their twins
    (``_twin_advice.py``, by ``scripts/gen_async.py``); what is not in it — a
    sync feature without a twin — is reached with ``store.call`` or ``store.context``.
    """
    from ._twin_advice import ADVICE  # only on the error path

    if not qualname:
        return None
    if qualname in ADVICE:
        return ADVICE[qualname]
    owner, _, method = qualname.rpartition(".")
    if method in ("__enter__", "__exit__"):
        return f"async with store.context(lambda st: ...)  # {owner}"
    if owner:
        return f"await store.call(lambda st: ...)  # runs {qualname}() off the loop"
    return None
