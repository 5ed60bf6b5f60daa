"""What an adapter given a :class:`~statekeel.Store` or an :class:`~statekeel.aio.AsyncStore` works with."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from ..aio import AsyncStore
from ..aio._worker import Worker
from ..core import Core

if TYPE_CHECKING:
    from ..aio._native import Lane

__all__ = ["Given", "given"]


class Given(NamedTuple):
    core: Core
    """The sync store the adapter's sync code uses."""
    worker: Worker
    """Where its async methods run what is not native: an AsyncStore's own worker, else a new one."""
    owns_worker: bool
    """Whether the adapter shuts the worker down when it closes (not an AsyncStore's)."""
    lane: Lane | None
    """An AsyncStore's native lane when its reads run on the event loop (PostgreSQL, Redis), else None."""


def given(store: Core | AsyncStore, workers: int) -> Given:
    """``store`` as an adapter uses it: an AsyncStore's sync store, worker and lane (its drivers and
    worker are the store's, closed with it), or a sync store with a worker of ``workers`` threads."""
    if isinstance(store, AsyncStore):
        return Given(store.sync, store._worker, False, None if store._lane is None else store._lane.reader)
    return Given(store, Worker(workers), True, None)
