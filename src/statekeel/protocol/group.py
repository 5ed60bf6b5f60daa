"""Group commit: batches that writers make at the same time, committed as one batch (one fsync).

A backend whose writes are serialized by a lock and each end in an fsync (SQLite, files)
makes concurrent writers queue: each waits for the one before it to commit, then commits
alone. :class:`ThreadGroup` lets whoever takes the lock commit every batch queued by
then (leader and followers): a follower that finds its batch committed returns its result
without touching storage. :func:`commit_together` is the commit itself, shared with the
asyncio group commit (:mod:`statekeel.aio._group`).

Each caller keeps its own outcome: if the combined batch is refused (one of its
compare-and-sets conflicts, a value the backend rejects), nothing of it was written — it
is atomic — and the batches are applied again one by one, so each caller gets exactly the
result or error its batch alone would give. An error that may have been applied
(:attr:`StatekeelError.maybe_applied`: the disk or the connection failed mid-commit) is never
retried: every caller of the group gets it, as a caller of the plain apply would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import ContextManager, Final

from ..errors import StatekeelError
from . import Op, OpResult

__all__ = ["ThreadGroup", "commit_together"]

Outcome = list[OpResult] | BaseException
Apply = Callable[[Sequence[Op]], list[OpResult]]


def commit_together(apply: Apply, batches: Sequence[Sequence[Op]]) -> list[Outcome]:
    """Apply ``batches`` with ``apply`` as one atomic batch; if it is refused, each on its own."""
    if len(batches) == 1:
        return [_alone(apply, batches[0])]
    try:
        results = apply([op for ops in batches for op in ops])
    except StatekeelError as exc:
        if exc.maybe_applied:
            return [exc for _ in batches]
        return [_alone(apply, ops) for ops in batches]  # nothing was written: find whose it was
    out: list[Outcome] = []
    start = 0
    for ops in batches:
        out.append(results[start : start + len(ops)])
        start += len(ops)
    return out


def _alone(apply: Apply, ops: Sequence[Op]) -> Outcome:
    try:
        return apply(ops)
    except Exception as exc:  # noqa: BLE001 - handed to the caller whose batch it was
        return exc


_AGAIN: Final = object()
"""The outcome of a batch whose leader was interrupted (KeyboardInterrupt, ...) before committing it."""


class _Queued:
    __slots__ = ("ops", "outcome")

    def __init__(self, ops: Sequence[Op]) -> None:
        self.ops = ops
        self.outcome: Outcome | object | None = None


class ThreadGroup:
    """Group commit across threads for a backend whose writes hold a lock (``locked()``: entered
    per commit): :meth:`apply` queues the batch, takes the lock, and — unless a leader already
    committed it meanwhile — commits everything queued with ``apply`` (called with the lock
    held, the ops already checked by their callers)."""

    def __init__(self, locked: Callable[[], ContextManager[object]], apply: Apply) -> None:
        self._locked = locked
        self._apply = apply
        self.queue: list[_Queued] = []
        """The batches waiting for a leader. A backend whose lock is a plain mutex may commit a batch
        directly, without :meth:`apply`, when it takes the lock without waiting and this is empty
        (a thread alone then pays nothing for the grouping)."""
        self._guard = threading.Lock()
        self.commits = 0
        """Commits made by leaders (a group of any size counts once); with ``batches``, how much
        was grouped."""
        self.batches = 0

    def apply(self, ops: Sequence[Op]) -> list[OpResult]:
        entry = _Queued(ops)
        while True:
            with self._guard:
                self.queue.append(entry)
            try:
                with self._locked():
                    if entry.outcome is None:  # no leader took it: lead
                        with self._guard:
                            group, self.queue = self.queue, []
                        self._lead(group)
            except BaseException:
                with self._guard:  # not taken (the lock refused): no later leader may commit it
                    self.queue = [q for q in self.queue if q is not entry]
                raise
            outcome = entry.outcome
            if outcome is _AGAIN:  # its leader was interrupted before committing it
                entry.outcome = None
                continue
            if isinstance(outcome, BaseException):
                raise outcome
            assert isinstance(outcome, list)
            return outcome

    def _lead(self, group: list[_Queued]) -> None:
        self.commits += 1
        self.batches += len(group)
        try:
            outcomes = commit_together(self._apply, [q.ops for q in group])
        except Exception as exc:  # noqa: BLE001 - not the backend's own refusal: everyone's
            outcomes = [exc for _ in group]
        except BaseException:  # interrupted: the others commit theirs again
            for q in group:
                q.outcome = _AGAIN
            raise
        for q, outcome in zip(group, outcomes):
            q.outcome = outcome
