"""The channel values of each thread's newest checkpoint, kept in memory between turns.

Every LangGraph run starts with ``get_tuple`` of the thread's newest checkpoint, and a
saver that decodes the whole state there pays O(history) per turn however little it
stores: at 1,000 turns of ``add_messages`` that is 2,000 messages rebuilt as pydantic
objects, ~30 ms, most of a turn. This saver just wrote (or read) that checkpoint, so
it keeps its channel values keyed by ``(channel, version)`` and hands them back.

Why this is exact: a channel version's stored value never changes (versions are
unique per thread, ``<counter>.<random>``), so a value remembered under a version is
the value stored under it; the checkpoint record itself (versions, metadata, parent)
and its pending writes are still read from the store on every call, so another
writer's newer checkpoint is seen at once and only the values it shares with ours
are reused. Containers (list, dict, set) are copied in and out, so a reducer that
extends a list in place cannot change what is remembered; the items themselves
(messages) are shared, as LangGraph shares them between the steps of one run — a
graph that mutates an already-checkpointed message object in place instead of
returning an update should open the saver with ``reuse_values=False``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from .deltas import MISSING

__all__ = ["ValueMemo", "shallow_copy"]

_CONTAINERS = (list, dict, set)


def shallow_copy(value: Any) -> Any:
    """A new container holding the same items (lists, dicts, sets); anything else as is."""
    return value.copy() if type(value) in _CONTAINERS else value


class ValueMemo:
    """``(channel, version) -> value`` of the newest checkpoint per thread namespace; bounded LRU, thread-safe."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._values: OrderedDict[tuple[str, str], dict[tuple[str, str], Any]] = OrderedDict()

    def remember(self, thread: str, ns: str, versions: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        """Keep ``values`` (channel -> value) of a checkpoint whose channel versions are ``versions``
        (a channel with a version and no value is remembered as :data:`MISSING`, stored as empty)."""
        kept = {(ch, str(v)): shallow_copy(values.get(ch, MISSING)) for ch, v in versions.items()}
        with self._lock:
            self._values[(thread, ns)] = kept
            self._values.move_to_end((thread, ns))
            while len(self._values) > self._size:
                self._values.popitem(last=False)

    def recall(self, thread: str, ns: str, pairs: Iterable[tuple[str, Any]]) -> dict[tuple[str, str], Any]:
        """``(channel, version) -> value`` (or :data:`MISSING`) for the pairs remembered; copy a
        value with :func:`shallow_copy` before handing it out."""
        with self._lock:
            kept = self._values.get((thread, ns))
            if kept is None:
                return {}
            self._values.move_to_end((thread, ns))
        wanted = {(ch, str(v)) for ch, v in pairs}
        return {pair: kept[pair] for pair in wanted if pair in kept}

    def forget_thread(self, thread: str) -> None:
        """Drop a thread's values (its records were deleted, pruned or overwritten by a copy)."""
        with self._lock:
            for key in [k for k in self._values if k[0] == thread]:
                del self._values[key]
