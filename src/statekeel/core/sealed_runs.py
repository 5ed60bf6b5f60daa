"""Opening what an encrypted store holds: one value, and a whole run of a log's entries at once.

A reload (``history()``) reads thousands of sealed entries. :func:`open_run` opens them
in bulk — :meth:`~statekeel.core.encryption.Cipher.open_run` decrypts them in C loops,
:func:`~statekeel.codec_msg.open_forms` takes the roles out of chat messages in one loop —
given the seq of the first: each entry's associated data binds its seq, so a wrong first
seq, damage or a value planted in clear makes the whole run fail (None), never a wrong
answer; the caller then opens entry by entry, which names what it refuses.
"""

from __future__ import annotations

from itertools import count
from operator import itemgetter
from typing import Final

from ..codec_msg import SEALED, open_form, open_forms
from ..errors import IntegrityError
from ..protocol import LogInfo
from .encryption import Cipher

__all__ = ["STEP", "first_of", "open_run", "unpacked"]

STEP: Final = "+aesgcm"
"""The codec step of a sealed value."""

_DATA, _CODEC = itemgetter(0), itemgetter(1)


def first_of(info: LogInfo | None, n: int, reverse: bool) -> int | None:
    """The seq of the first of the ``n`` values ``read_values`` returned, by ``info`` of their log."""
    if info is None:
        return None
    return info.last_seq + 1 - n if reverse else info.first_seq


def open_run(cipher: Cipher, where: str, values: list[tuple[bytes, str]], first: int) -> list[tuple[bytes, str]] | None:
    """``values`` — entries ``first, first + 1, …`` of the log at ``where``, as stored — opened in
    bulk, or None: not all sealed (planted plaintext, a conversion), not those seqs, or one fails."""
    codecs = set(map(_CODEC, values))
    if not all(c.endswith(STEP) for c in codecs):
        return None
    opened = cipher.open_run(where, first, list(map(_DATA, values)))
    if opened is None:
        return None
    base = {c: c[: -len(STEP)] for c in codecs}
    if len(base) == 1 and (one := next(iter(base.values())))[:3] == SEALED:
        msgs = open_forms(opened, one)  # a chat history: every entry a sealed message
        if msgs is not None:
            return msgs
    return [unpacked(data, codec, where, b"e", seq) if codec[:3] == SEALED else (data, codec)
            for seq, data, codec in zip(count(first), opened, map(base.__getitem__, map(_CODEC, values)))]  # fmt: skip


def unpacked(data: bytes, codec: str, where: str, kind: bytes, pos: int) -> tuple[bytes, str]:
    """A decrypted ``msg+…`` value as ``msg:<role>+…`` (its role was sealed inside)."""
    opened = open_form(data, codec)
    if opened is None:
        what = f"entry {pos} of log {where!r}" if kind == b"e" else f"record {where!r} (version {pos})"
        raise IntegrityError(f"the encrypted {what} is stored under codec {codec + STEP!r} but does not hold a "
                             "sealed message: its codec name was changed; it was not returned")  # fmt: skip
    return opened
