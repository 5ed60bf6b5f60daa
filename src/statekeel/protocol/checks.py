"""Bad input to :meth:`Backend.apply`: ops whose fields are not what the protocol says.

Every built-in backend (and the encryption and chain layers) calls :func:`check_ops`
before it writes anything, so an op holding a ``str`` where bytes belong, a NaN or
infinite expiry, an integer no backend can store, a lone surrogate in a key or codec
name, or an ``Append`` at a seq below 1 is refused the same way everywhere — with
:class:`~statekeel.errors.InvalidInputError` naming the op and the field, and the
whole batch writes nothing — instead of being stored by one backend, crashing
another with a driver's ``TypeError`` and damaging a third's files.

The check is a few ``type(x) is`` tests per op (the well-formed path); the message
is only worked out for an op that fails them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..errors import InvalidInputError
from . import (
    ANY,
    KEEP,
    Append,
    Delete,
    Entry,
    Expire,
    Load,
    LoadEntries,
    Op,
    Put,
    Record,
    Rewrite,
    Touch,
    Trim,
)

__all__ = ["Checked", "check_ops"]

_MAX = 2**63 - 1
"""The largest version, seq or bound every backend stores (SQLite and PostgreSQL: 64-bit signed)."""


class Checked(list[Op]):
    """A batch a layer between the API and the backend (encryption, the chain) built from ops that
    :func:`check_ops` passed — the same ops with their values sealed, positions set and heads added,
    every field of the kinds it checks — with a ``now`` it checked or took from ``time.time()``: the
    backend beneath does not check it again (the layers stack: a turn's ops were checked once per layer)."""

    __slots__ = ()


def check_ops(ops: Sequence[Op], now: float | None = None) -> None:
    """Raise :class:`InvalidInputError` for the first op (or ``now``) that breaks the protocol's types."""
    if type(ops) is Checked:
        return
    if now is not None and not _finite(now):
        raise InvalidInputError(f"now= must be seconds since the epoch (a finite float) or None, got {now!r}")
    refreshes = False
    for op in ops:
        if not _plainly_fine(op):
            fault = _fault(op)
            if fault:
                raise InvalidInputError(f"{_name(op)}: {fault}; nothing was written. Build ops from "
                                        "statekeel.protocol with the types its fields declare (values are bytes "
                                        "encoded by a codec, keys and codec names valid Unicode text)")  # fmt: skip
            refreshes = refreshes or (type(op) is Touch and op.refresh is not None)
    if refreshes:
        _refreshed_alone(ops)


def _refreshed_alone(ops: Sequence[Op]) -> None:
    """A TTL refresh (``Touch(refresh=)``) is judged against the record as stored before the batch:
    no other op of the batch may write that record (each backend would order them differently)."""
    for op in ops:
        if type(op) is Touch and op.refresh is not None:
            for other in ops:
                if other is not op and (
                    (isinstance(other, (Put, Delete, Touch)) and other.key == op.key)
                    or (isinstance(other, Load) and other.record.key == op.key)
                    or (isinstance(other, Expire) and op.key.startswith(other.prefix))
                ):
                    raise InvalidInputError(
                        f"Touch(refresh=) of {op.key!r}: another op of the batch ({_name(other)}) writes the same "
                        "record; send the refresh in a batch of its own or drop it (the write sets the expiry)"
                        "; nothing was written"
                    )


def _plainly_fine(op: Op) -> bool:
    """True for a well-formed Put or Append of ASCII names, judged inline (every write has them:
    this is the whole cost of checking an everyday batch); False sends ``op`` to :func:`_fault`."""
    if isinstance(op, Put):
        key, codec, expect, expires = op.key, op.codec, op.expect, op.expires_at
        return (
            type(op.data) is bytes and type(key) is str and key.isascii() and type(codec) is str and codec.isascii()
            and (expect is ANY or expect is None or type(expect) is int)
            and (expires is None or expires is KEEP or (type(expires) is float and expires - expires == 0.0))
        )  # fmt: skip
    if isinstance(op, Append):
        log, at, expires = op.log, op.at, op.expires_at
        if not (type(log) is str and log.isascii() and (at is None or (type(at) is int and 1 <= at <= _MAX))
                and (expires is KEEP or expires is None or (type(expires) is float and expires - expires == 0.0))):
            return False  # fmt: skip
        items: Sequence[object] = op.items
        if not isinstance(items, (tuple, list)):
            return False
        for item in items:
            if not (type(item) is tuple and len(item) == 2 and type(item[0]) is bytes and type(item[1]) is str
                    and item[1].isascii()):
                return False  # fmt: skip
        return True
    return False


def _fault(op: Op) -> str | None:
    """What is wrong with ``op``, or None."""
    if isinstance(op, Put):
        return (_key(op.key, "key") or _data(op.data) or _key(op.codec, "codec") or _expect(op.expect)
                or _expiry(op.expires_at, keep=True))  # fmt: skip
    if isinstance(op, Append):
        return _key(op.log, "log") or _items(op.items) or _seq(op.at, "at", none=True) or _expiry(op.expires_at, keep=True)
    if isinstance(op, Delete):
        return _key(op.key, "key") or _expect(op.expect)
    if isinstance(op, Touch):
        return _key(op.key, "key") or _expiry(op.expires_at, keep=True) or _refresh(op.refresh)
    if isinstance(op, Expire):
        return _key(op.prefix, "prefix") or _expiry(op.expires_at, keep=False)
    if isinstance(op, Trim):
        return _key(op.log, "log") or (None if type(op.before) is int else _bad("before=", op.before, "an int"))
    if isinstance(op, Rewrite):
        return (_key(op.log, "log") or (None if type(op.seq) is int else _bad("seq=", op.seq, "an int"))
                or _data(op.data) or _key(op.codec, "codec"))  # fmt: skip
    if isinstance(op, Load):
        return _record(op.record)
    if isinstance(op, LoadEntries):
        return _key(op.log, "log") or _entries(op) or _expiry(op.expires_at, keep=False)
    return None  # an op type of its own: the backend's dispatch table judges it


def _name(op: Op) -> str:
    target = getattr(op, "key", None) or getattr(op, "log", None) or getattr(op, "prefix", None)
    if isinstance(op, Load) and isinstance(op.record, Record):
        target = op.record.key
    name = type(op).__name__
    what = f"{'an' if name[0] in 'AEIOU' else 'a'} {name}"
    return f"{what} of {target!r}" if isinstance(target, str) else what


def _text(value: object) -> bool:
    return type(value) is str and (value.isascii() or _utf8(value))


def _utf8(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _finite(value: object) -> bool:
    if type(value) is float:
        return math.isfinite(value)
    return type(value) is int and -_MAX <= value <= _MAX


def _count(value: object, low: int) -> bool:
    return type(value) is int and low <= value <= _MAX


def _bad(field: str, value: object, want: str) -> str:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return f"{field} must be {want}, got {type(value).__name__} {shown}"


def _key(value: object, field: str) -> str | None:
    if type(value) is not str:
        return _bad(f"{field}=", value, "a str")
    if not _text(value):
        return f"{field}= {value!r} holds a lone surrogate, which is not valid Unicode text and cannot be stored"
    return None


def _data(value: object) -> str | None:
    return None if type(value) is bytes else _bad("data=", value, "bytes (the codec's encoding of the value)")


def _expect(value: object) -> str | None:
    if value is ANY or value is None or type(value) is int:  # an int no version has is a conflict
        return None
    return _bad("expect=", value, "ANY, None or an int (the version the record must have)")


def _refresh(value: object) -> str | None:
    if value is None or _count(value, 1):
        return None
    return _bad("refresh=", value, f"None or the version the record was read at (1 to {_MAX})")


def _seq(value: object, field: str, *, none: bool = False) -> str | None:
    if (none and value is None) or _count(value, 1):
        return None
    return _bad(f"{field}=", value, f"{'None or ' if none else ''}a seq from 1 to {_MAX}")


def _expiry(value: object, *, keep: bool) -> str | None:
    if value is None or (keep and value is KEEP) or _finite(value):
        return None
    return _bad("expires_at=", value, f"seconds since the epoch (a finite float), None{' or KEEP' if keep else ''}")


def _items(items: object) -> str | None:
    if type(items) not in (tuple, list):
        return _bad("items=", items, "a tuple of (data, codec) pairs")
    pairs: Sequence[object] = items  # type: ignore[assignment]
    for i, item in enumerate(pairs):
        if type(item) is not tuple or len(item) != 2:
            return _bad(f"items[{i}] =", item, "a (data, codec) pair")
        fault = _data(item[0]) or _key(item[1], "codec")
        if fault:
            return f"items[{i}]: {fault}"
    return None


def _record(rec: object) -> str | None:
    if not isinstance(rec, Record):
        return _bad("record=", rec, "a Record")
    version = None if type(rec.version) is int else _bad("version=", rec.version, "an int")
    return (_key(rec.key, "key") or _data(rec.data) or _key(rec.codec, "codec") or version
            or _time(rec.created_at, "created_at") or _time(rec.updated_at, "updated_at")
            or _expiry(rec.expires_at, keep=False))  # fmt: skip


def _entries(op: LoadEntries) -> str | None:
    if type(op.entries) not in (tuple, list):
        return _bad("entries=", op.entries, "a tuple of Entry")
    for i, entry in enumerate(op.entries):
        if not isinstance(entry, Entry):
            return _bad(f"entries[{i}] =", entry, "an Entry")
        fault = (_key(entry.log, "log") or _count_any(entry.seq) or _data(entry.data) or _key(entry.codec, "codec")
                 or _time(entry.created_at, "created_at"))  # fmt: skip
        if fault:
            return f"entries[{i}]: {fault}"
    return None


def _count_any(value: object) -> str | None:
    """An entry's seq: an int (below 1 is refused by :func:`.batch.check_entry_seqs`, past what the
    backend stores by the backend)."""
    return None if type(value) is int else _bad("seq=", value, "an int")


def _time(value: object, field: str) -> str | None:
    return None if _finite(value) else _bad(f"{field}=", value, "seconds since the epoch (a finite float)")
