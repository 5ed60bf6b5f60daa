"""A batch of protocol ops as bytes, for the write-behind queue in Redis.

Format ``tier-batch-2``: a 4-byte big-endian length, a JSON document — the batch
clock (``now``, so PostgreSQL replays it with the very timestamps Redis wrote) and
the ops, each payload replaced by its index in a table of lengths — then the
payloads back to back, raw. The JSON part stays readable with ``redis-cli``; the
payloads (most of a batch's bytes) are neither base64-inflated nor escaped, so a
turn's queue entry is about the size of its data. Decoding it — unlike pickle —
cannot run code planted in Redis. Entries queued in the older ``tier-batch-1``
(the whole batch as JSON, payloads in base64) are still read.

Format ``tier-batch-3`` (what write-behind queues) is ``tier-batch-2`` where an Append
whose seqs in Redis are known is written as a reference, ``["aref", log, seq, [codecs],
expires, at]``, without its items: they are in Redis' copy of the log already, written by
the same atomic batch from ``seq`` on, and the flusher reads them back from there
(:class:`AppendRef`). ``at`` is the Append's own precondition (usually none: PostgreSQL
numbers a replayed append itself, as it did before). A
turn's queue entry is then a hundred-odd bytes instead of a second copy of its messages,
which Redis would otherwise write (and fsync) twice.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple, TypeAlias

from ...errors import CorruptionError
from ...protocol import (
    ANY,
    KEEP,
    Append,
    Delete,
    Entry,
    Expire,
    Keep,
    Load,
    LoadEntries,
    Op,
    Put,
    Record,
    Rewrite,
    Touch,
    Trim,
)

CODEC: Final = "tier-batch-2"
"""The codec name of queue entries holding every payload (the flusher's dead letters, no-op batches)."""
REF_CODEC: Final = "tier-batch-3"
"""The codec name of write-behind queue entries: pinned Appends by reference (:class:`AppendRef`)."""
JSON_CODEC: Final = "tier-batch-1"
"""The previous format, still read: the whole batch as JSON, payloads in base64."""
_LEN: Final = struct.Struct(">I")
_compact: Final = json.JSONEncoder(separators=(",", ":")).encode
"""``json.dumps(value, separators=(",", ":"))`` with its encoder made once (json.dumps makes one per
call when given separators: a write-behind write pays it every batch)."""

Blob = Callable[[bytes], Any]
"""How a payload is written into the document (an index into the payload table, or base64)."""
Unblob = Callable[[Any], bytes]
"""How a payload is read back out of it."""


class AppendRef(NamedTuple):
    """A queued Append whose items are read back from Redis' copy of ``log`` (seqs ``seq`` onwards,
    one per codec) when the batch is replayed — see :mod:`statekeel.backends.tiered.refs`."""

    log: str
    seq: int
    """Where Redis put the first item."""
    codecs: tuple[str, ...]
    expires_at: float | None | Keep
    at: int | None
    """The Append's own ``at`` (replayed as given)."""


Queued: TypeAlias = "Op | AppendRef"
"""An op of a decoded queue entry: an Append by reference until the flusher resolves it."""


def _aref(log: Any, seq: Any, codecs: Any, expires: Any, at: Any) -> AppendRef:
    if not (type(log) is str and type(seq) is int and seq >= 1 and type(codecs) is list and codecs
            and all(type(c) is str for c in codecs) and (at is None or type(at) is int)):  # fmt: skip
        raise ValueError("an Append by reference names no log, seq or codecs")
    return AppendRef(log, seq, tuple(codecs), _back(expires), at)


def _ref_of(op: Op, seq: int | None) -> AppendRef | None:
    """``op`` as a reference to its items in Redis from ``seq`` on (an Append with items only)."""
    if seq is not None and type(op) is Append and op.items:
        return AppendRef(op.log, seq, tuple(c for _, c in op.items), op.expires_at, op.at)
    return None


def _special(value: object) -> object:
    """ANY / KEEP as JSON strings; numbers and None as they are."""
    if value is ANY:
        return "ANY"
    if value is KEEP:
        return "KEEP"
    return value


def _back(value: Any) -> Any:
    return ANY if value == "ANY" else KEEP if value == "KEEP" else value


def _record(rec: Record, b: Blob) -> list[Any]:
    return [rec.key, b(rec.data), rec.codec, rec.version, rec.created_at, rec.updated_at, rec.expires_at]


def _entry(e: Entry, b: Blob) -> list[Any]:
    return [e.seq, b(e.data), e.codec, e.created_at]


_ENCODE: Final[dict[type, Callable[[Any, Blob], list[Any]]]] = {
    Put: lambda o, b: ["put", o.key, b(o.data), o.codec, _special(o.expect), _special(o.expires_at)],
    Delete: lambda o, b: ["del", o.key, _special(o.expect)],
    Append: lambda o, b: ["app", o.log, [[b(d), c] for d, c in o.items], _special(o.expires_at), o.at],
    Touch: lambda o, b: ["touch", o.key, _special(o.expires_at), *([] if o.refresh is None else [o.refresh])],
    Expire: lambda o, b: ["exp", o.prefix, o.expires_at],
    Trim: lambda o, b: ["trim", o.log, o.before],
    Load: lambda o, b: ["load", _record(o.record, b)],
    LoadEntries: lambda o, b: ["loadents", o.log, [_entry(e, b) for e in o.entries], o.expires_at],
    Rewrite: lambda o, b: ["rewrite", o.log, o.seq, b(o.data), o.codec],
}

_DECODE: Final[dict[str, Callable[..., Queued]]] = {
    "put": lambda u, k, d, c, e, x: Put(k, u(d), c, _back(e), _back(x)),
    "del": lambda u, k, e: Delete(k, _back(e)),
    "app": lambda u, log, items, x, at: Append(log, tuple((u(d), c) for d, c in items), _back(x), at),
    "touch": lambda u, k, x, refresh=None: Touch(k, _back(x), refresh),
    "exp": lambda u, p, x: Expire(p, x),
    "trim": lambda u, log, before: Trim(log, before),
    "load": lambda u, r: Load(Record(r[0], u(r[1]), *r[2:])),
    "loadents": lambda u, log, es, x: LoadEntries(
        log, tuple(Entry(log, s, u(d), c, t) for s, d, c, t in es), x
    ),
    "rewrite": lambda u, log, seq, d, c: Rewrite(log, seq, u(d), c),
    "aref": lambda u, log, seq, codecs, x, at: _aref(log, seq, codecs, x, at),
}


def encode(ops: Sequence[Op], now: float, *, seqs: Sequence[int | None] | None = None) -> bytes:
    """``ops`` and the batch clock as one ``tier-batch-2`` queue entry (``seqs``: ``tier-batch-3``, each
    Append with items and a seq there — where Redis put its first item — as an :class:`AppendRef`).

    A write-behind write pays this on every batch: a batch of Puts, Appends and
    Deletes with plain values (a turn) is written by :func:`_encode_plain`, the same
    bytes with a fraction of the work; anything else by :func:`_encode_any`.
    """
    try:
        return _encode_plain(ops, now, seqs)
    except _Unusual:
        return _encode_any(ops, now, seqs)


def _encode_any(ops: Sequence[Op], now: float, seqs: Sequence[int | None] | None = None) -> bytes:
    """Any batch as a ``tier-batch-2`` (``-3``) entry, through the JSON encoder (the reference encoding)."""
    payloads: list[bytes] = []

    def blob(data: bytes) -> int:
        payloads.append(data)
        return len(payloads) - 1

    def listed_op(op: Op, seq: int | None) -> list[Any]:
        ref = _ref_of(op, seq)
        if ref is not None:
            return ["aref", ref.log, ref.seq, list(ref.codecs), _special(ref.expires_at), ref.at]
        return _ENCODE[type(op)](op, blob)

    listed = [listed_op(op, None if seqs is None else seqs[i]) for i, op in enumerate(ops)]
    doc = _compact({"now": now, "ops": listed, "sizes": [len(p) for p in payloads]})
    head = doc.encode()
    return b"".join([_LEN.pack(len(head)), head, *payloads])


class _Unusual(Exception):
    """A value :func:`_encode_plain` leaves to the JSON encoder (and its errors)."""


_quote: Final = json.encoder.encode_basestring_ascii
"""A str as the JSON encoder writes it (``ensure_ascii``, as :data:`_compact`)."""


def _name(value: object) -> str:
    if type(value) is str:
        return _quote(value)
    raise _Unusual


def _number(value: object) -> str:
    """An Append's ``at`` or the clock as :func:`_compact` writes it."""
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is float and math.isfinite(value):
        return float.__repr__(value)
    if value is None:
        return "null"
    raise _Unusual  # bool, NaN, a wrong type: the reference encoding decides


def _scalar(value: object) -> str:
    """An ``expect`` or expiry as :func:`_compact` writes it after :func:`_special`."""
    if value is ANY:
        return '"ANY"'
    if value is KEEP:
        return '"KEEP"'
    return _number(value)


def _blob(data: object, payloads: list[bytes]) -> int:
    """Add ``data`` to the payload table; its index."""
    if type(data) is not bytes:
        raise _Unusual
    payloads.append(data)
    return len(payloads) - 1


def _encode_plain(ops: Sequence[Op], now: float, seqs: Sequence[int | None] | None = None) -> bytes:
    """:func:`_encode_any`'s bytes for Puts, Appends and Deletes, the JSON written directly;
    :class:`_Unusual` for any other op or value (tests/test_tiered_batches.py compares the two)."""
    payloads: list[bytes] = []
    listed: list[str] = []
    for i, op in enumerate(ops):
        if type(op) is Append and seqs is not None and seqs[i] is not None and op.items:
            codecs = ",".join([_name(c) for _, c in op.items])
            ref = f'["aref",{_name(op.log)},{_number(seqs[i])},[{codecs}],{_scalar(op.expires_at)},{_number(op.at)}]'
            listed.append(ref)
        elif type(op) is Append:
            items = ",".join([f"[{_blob(d, payloads)},{_name(c)}]" for d, c in op.items])
            listed.append(f'["app",{_name(op.log)},[{items}],{_scalar(op.expires_at)},{_number(op.at)}]')
        elif type(op) is Put:
            at, exp = _blob(op.data, payloads), _scalar(op.expires_at)
            listed.append(f'["put",{_name(op.key)},{at},{_name(op.codec)},{_scalar(op.expect)},{exp}]')
        elif type(op) is Delete:
            listed.append(f'["del",{_name(op.key)},{_scalar(op.expect)}]')
        else:
            raise _Unusual
    sizes = ",".join([str(len(p)) for p in payloads])
    head = f'{{"now":{_number(now)},"ops":[{",".join(listed)}],"sizes":[{sizes}]}}'.encode()
    return b"".join([_LEN.pack(len(head)), head, *payloads])


def _binary(data: bytes) -> tuple[dict[str, Any], Unblob]:
    """The document of a ``tier-batch-2`` entry and a reader of its payloads (checked to fill the entry)."""
    (size,) = _LEN.unpack_from(data)
    doc = json.loads(data[4 : 4 + size])
    spans, at = [], 4 + size
    for n in doc["sizes"]:
        spans.append((at, at + int(n)))
        at += int(n)
    if at != len(data):
        raise ValueError(f"payloads end at byte {at} of {len(data)}")
    return doc, lambda i: data[spans[i][0] : spans[i][1]]


def decode(data: bytes, where: str, codec: str = CODEC) -> tuple[list[Queued], float]:
    """The ops and clock of a queue entry; a :class:`CorruptionError` naming ``where`` if unreadable.
    Appends by reference (``tier-batch-3``) come back as :class:`AppendRef`."""
    unblob: Unblob
    try:
        if codec == JSON_CODEC:
            doc, unblob = json.loads(data), base64.b64decode
        elif codec == CODEC or codec == REF_CODEC:
            doc, unblob = _binary(data)
        else:
            raise ValueError(f"unknown queue entry format {codec!r}")
        return [_DECODE[op[0]](unblob, *op[1:]) for op in doc["ops"]], float(doc["now"])
    except (ValueError, KeyError, TypeError, IndexError, struct.error) as exc:
        raise CorruptionError(
            f"the write-behind queue entry {where} cannot be decoded ({exc}); it stays in Redis — "
            "inspect it with redis-cli and report it",
            where,
        ) from None
