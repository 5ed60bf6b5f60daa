"""The history fast path of the Redis backend: ``(data, codec)`` of a log's frames, checked in bulk.

A whole-history reload returns thousands of list elements, each framed by
:func:`.wire.frame` as ``#``, the 4-byte checksum, ``created_at|len(codec)|codec``
and the data. Unframing and verifying them one by one (a split, a float, an
:class:`Entry`, a checksum call each) cost ~5 µs per message, more than the
server's reply. Here the common case — every frame carries a checksum and the
codec ``json`` — is handled with C loops over the whole reply (``find``,
``startswith``, slicing, CRC-32, one list comparison). Anything else (another
codec, frames from before checksums, damage) returns None and the caller takes
the entry-by-entry path, which names the damaged entry.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from itertools import repeat
from operator import methodcaller
from zlib import crc32

from ...protocol.integrity import MASK, head

__all__ = ["json_values"]

_CODEC = "json"
_TAG = b"|4|json"
"""What follows ``created_at`` in a frame of codec ``json``: ``|len(codec)|codec``."""
_FRAMED = methodcaller("startswith", b"#")
_SUM = struct.Struct(">I")


def json_values(log: str, first: int, frames: Sequence[bytes]) -> list[tuple[bytes, str]] | None:
    """``(data, "json")`` of ``frames`` (entries ``first, first + 1, …`` of ``log``) if every one is a
    checksummed ``json`` frame whose checksum matches; None otherwise (see the module docstring)."""
    if not frames:
        return []
    try:
        if not all(map(_FRAMED, frames)):
            return None
        # the first "|" after the checksum bytes (which may hold one) ends created_at
        bars = list(map(bytes.find, frames, repeat(b"|"), repeat(5)))
        if not all(map(bytes.startswith, frames, repeat(_TAG), bars)):
            return None
        datas = [f[p + 7 :] for f, p in zip(frames, bars)]
        stored = [(_SUM.unpack_from(f, 1)[0] - seq) & MASK for seq, f in enumerate(frames, first)]
    except (TypeError, AttributeError, struct.error):  # not bytes (a gap), or too short for a checksum
        return None
    if list(map(crc32, datas, repeat(head(log, _CODEC)))) != stored:
        return None
    return list(zip(datas, repeat(_CODEC)))
