"""What a LangGraph thread's records hold, and how they are encoded (pure: no I/O).

Every value LangGraph hands over goes through the saver's own serializer
(``serde.dumps_typed``), so custom types round-trip exactly as with LangGraph's
savers; the resulting ``(type, bytes)`` pair is stored as ``{"t": type, "b": bytes}``
through statekeel's codec and backend, so compression, encryption, checksums and
tenants apply to all of it — metadata and pending writes included.

Records of one thread (keys in :mod:`statekeel.core.layout`)::

    head/<ns>                    {"id": newest checkpoint id}      compare-and-set: fencing
    cp/<ns>/<~id>                {"c": checkpoint without values, "m": metadata, "p": parent id}
    w/<ns>/<~id>/<task>/<idx>    {"c": channel, "p": task_path, "t", "b" (, "z")}
    v/<ns>/<channel>/<version>   a full value {"t", "b" (, "z": b is zlib)}, an empty marker {"e": 1}, or a delta
                                 {"t", "b": the appended items, "base", "root", "n", "k", "cb", "rb"}
"""

from __future__ import annotations

import zlib
from typing import Any

from ...core import layout
from ...errors import ConflictError, CorruptionError, InvalidInputError, StatekeelError
from ...protocol import keys

__all__ = [
    "CheckpointForkError",
    "Typed",
    "invert_id",
    "pack",
    "unpack",
    "write_key",
    "parse_write_key",
    "check_thread_id",
    "ThreadKeys",
]

Typed = tuple[str, bytes]
"""What ``SerializerProtocol.dumps_typed`` returns: a type tag and the bytes."""

_ID_CHARS = "-0123456789abcdef"
_MIRRORED = "QPONMLKJIHGFEDCBA"  # strictly decreasing: a forward scan walks ids newest first
_TO_INVERTED = str.maketrans(_ID_CHARS, _MIRRORED)
_FROM_INVERTED = str.maketrans(_MIRRORED, _ID_CHARS)


class CheckpointForkError(ConflictError):
    """Another writer moved the thread's head past the parent this checkpoint builds on.

    Raised by ``put`` instead of silently forking the chain: the caller read
    the head, someone else wrote after it, and this write would start a branch.
    """

    def __init__(self, thread_id: str, ns: str, parent: str, head: str) -> None:
        where = f"thread {thread_id!r}" + (f" (namespace {ns!r})" if ns else "")
        StatekeelError.__init__(
            self,
            f"{where} moved on: this checkpoint builds on {parent!r}, but another writer has since "
            f"stored {head!r}; nothing was written. Re-read the thread (graph.get_state) and run "
            "again, or fork on purpose from an earlier checkpoint (graph.update_state / invoke with "
            "its checkpoint_id)",
        )
        self.key = layout.langgraph_head_key(thread_id, ns)
        self.expected = None
        self.actual = None
        self.thread_id, self.checkpoint_ns, self.parent, self.head = thread_id, ns, parent, head


def invert_id(checkpoint_id: str) -> str:
    """The key component of a checkpoint id: its characters mirrored, so newer sorts first.

    LangGraph's ids are uuid6 strings (time-ordered, lower-case hex); anything else
    would not sort, so it is refused.
    """
    if not isinstance(checkpoint_id, str) or not checkpoint_id or checkpoint_id.strip(_ID_CHARS):
        raise InvalidInputError(
            f"checkpoint ids must be LangGraph's uuid6 strings (lower-case hex and '-'), got "
            f"{checkpoint_id!r}; let LangGraph create the checkpoint ids"
        )
    return checkpoint_id.translate(_TO_INVERTED)


def revert_id(inverted: str) -> str:
    """The checkpoint id back from :func:`invert_id`'s key component."""
    return inverted.translate(_FROM_INVERTED)


def check_thread_id(value: Any) -> str:
    """LangGraph allows any thread id that prints; statekeel stores its ``str``."""
    if value is None or value == "":
        raise InvalidInputError(
            'a LangGraph config needs a thread_id: {"configurable": {"thread_id": "..."}}'
        )
    return str(value)


_ZLIB_FROM = 256
"""Serialized values from this size up are stored zlib-compressed (``"z": 1``): the codec
stores bytes as base64, which its own compression cannot shrink as well as the raw bytes
(a 1,000-byte message: 777 bytes instead of ~1,000, under SQLite's overflow threshold)."""


def pack(typed: Typed) -> dict[str, Any]:
    """``{"t": type, "b": bytes}`` for the codec (``"z": 1`` when ``b`` is compressed)."""
    data = bytes(typed[1])
    if len(data) >= _ZLIB_FROM:
        return {"t": typed[0], "b": zlib.compress(data, 6), "z": 1}
    return {"t": typed[0], "b": data}


def unpack(doc: dict[str, Any], key: str = "") -> Typed:
    """The ``(type, bytes)`` pair :func:`pack` stored (``key`` names the record in errors)."""
    if not doc.get("z"):
        return str(doc["t"]), bytes(doc["b"])
    try:
        return str(doc["t"]), zlib.decompress(bytes(doc["b"]))
    except zlib.error as exc:
        raise CorruptionError(
            f"the LangGraph value in {key or 'a record'!r} does not decompress ({exc}); run "
            "`statekeel doctor` and restore it from a backup",
            key,
        ) from None


def write_key(thread_id: str, ns: str, inverted: str, task_id: str, idx: int) -> str:
    """One pending write: unique per (checkpoint, task, idx), so a retried put_writes is idempotent."""
    return layout.langgraph_writes_prefix(thread_id, ns, inverted) + keys.escape("t" + task_id) + "/" + str(idx)


def parse_write_key(key: str) -> tuple[str, str, int]:
    """``(inverted checkpoint id, task_id, idx)`` of a pending write's key."""
    parts = keys.split(key)
    return parts[-3], parts[-2][1:], int(parts[-1])


class ThreadKeys:
    """The keys of one thread namespace, their escaped prefixes built once.

    A turn builds about twenty keys (values, checkpoints, writes, the head); escaping
    every component of each was a tenth of the saver's time. Same keys as
    :mod:`statekeel.core.layout` builds (tests compare them).
    """

    __slots__ = ("thread", "ns", "head", "checkpoints", "_writes", "_blobs")

    def __init__(self, thread: str, ns: str) -> None:
        self.thread, self.ns = thread, ns
        self.head = layout.langgraph_head_key(thread, ns)
        self.checkpoints = layout.langgraph_checkpoints_prefix(thread, ns)
        self._writes = layout.langgraph_writes_prefix(thread, ns)
        self._blobs: dict[str, str] = {}

    def checkpoint(self, inverted: str) -> str:
        """``cp/<ns>/<~id>`` (an inverted id holds only letters: nothing to escape)."""
        return self.checkpoints + inverted

    def blob(self, channel: str, version: str) -> str:
        """``v/<ns>/<channel>/<version>``."""
        prefix = self._blobs.get(channel)
        if prefix is None:
            prefix = self._blobs[channel] = layout.langgraph_blob_prefix(self.thread, self.ns, channel)
        return prefix + keys.escape(version)

    def write(self, inverted: str, task_id: str, idx: int) -> str:
        """``w/<ns>/<~id>/<task>/<idx>``, as :func:`write_key`."""
        return self._writes + inverted + "/" + keys.escape("t" + task_id) + "/" + str(idx)
