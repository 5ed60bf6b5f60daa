"""Fencing: a writer whose parent is no longer the head gets an error, not a silent fork.

Each thread namespace has a head record holding its newest checkpoint id; every
``put`` moves it with compare-and-set in the same atomic batch as the checkpoint.
A ``put`` is *fenced* — it must find its parent still at the head — when this saver
saw that parent as the head: it read it as the newest checkpoint (``get_tuple``), or
wrote it itself. That is exactly a LangGraph run continuing a thread. Two
processes that both loaded the head and both write after it: the second gets
:class:`~._records.CheckpointForkError`.

Deliberate forks stay allowed: a checkpoint LangGraph marks as a fork or a state
update (metadata ``source`` ``"fork"`` / ``"update"``, i.e. time travel and
``update_state``), and a run started from a checkpoint that was *not* the head when
it was read (``invoke(..., {"configurable": {"checkpoint_id": older}})``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

__all__ = ["HeadMarks", "FORK_SOURCES"]

FORK_SOURCES = frozenset({"fork", "update"})
"""Metadata sources of checkpoints that branch on purpose."""


class HeadMarks:
    """Which checkpoints this saver saw as the head of their namespace (bounded, thread-safe)."""

    def __init__(self, size: int = 4096, per_namespace: int = 8) -> None:
        self._size, self._per = size, per_namespace
        self._lock = threading.Lock()
        self._marks: OrderedDict[tuple[str, str], list[str]] = OrderedDict()

    def saw_head(self, thread: str, ns: str, checkpoint_id: str) -> None:
        """``checkpoint_id`` was the head when read or written: a put on it extends the thread."""
        with self._lock:
            ids = self._marks.setdefault((thread, ns), [])
            if checkpoint_id not in ids:
                ids.append(checkpoint_id)
                del ids[: -self._per]
            self._marks.move_to_end((thread, ns))
            while len(self._marks) > self._size:
                self._marks.popitem(last=False)

    def saw_older(self, thread: str, ns: str, checkpoint_id: str) -> None:
        """``checkpoint_id`` was read while not the head: a put on it is a deliberate fork."""
        with self._lock:
            ids = self._marks.get((thread, ns))
            if ids and checkpoint_id in ids:
                ids.remove(checkpoint_id)

    def extends(self, thread: str, ns: str, parent: str) -> bool:
        """Whether a put on ``parent`` must find it still at the head."""
        with self._lock:
            return parent in self._marks.get((thread, ns), ())

    def forget_thread(self, thread: str) -> None:
        with self._lock:
            for key in [k for k in self._marks if k[0] == thread]:
                del self._marks[key]
