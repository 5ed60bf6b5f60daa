"""A batch of protocol ops as bytes, for the write-behind queue in Redis.

JSON with base64 for the payloads: readable with ``redis-cli`` when something needs
inspecting, and — unlike pickle — decoding it cannot run code planted in Redis.
The batch keeps its clock (``now``) so PostgreSQL replays it with the very
timestamps Redis wrote.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any, Final

from ...errors import CorruptionError
from ...protocol import (
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

CODEC: Final = "tier-batch-1"
"""The codec name queue entries carry (its version is in the name)."""


def _b(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb(text: str) -> bytes:
    return base64.b64decode(text)


def _special(value: object) -> object:
    """ANY / KEEP as JSON strings; numbers and None as they are."""
    if value is ANY:
        return "ANY"
    if value is KEEP:
        return "KEEP"
    return value


def _back(value: Any) -> Any:
    return ANY if value == "ANY" else KEEP if value == "KEEP" else value


def _record(rec: Record) -> list[Any]:
    return [rec.key, _b(rec.data), rec.codec, rec.version, rec.created_at, rec.updated_at, rec.expires_at]


def _entry(e: Entry) -> list[Any]:
    return [e.seq, _b(e.data), e.codec, e.created_at]


_ENCODE: Final[dict[type, Callable[[Any], list[Any]]]] = {
    Put: lambda o: ["put", o.key, _b(o.data), o.codec, _special(o.expect), _special(o.expires_at)],
    Delete: lambda o: ["del", o.key, _special(o.expect)],
    Append: lambda o: ["app", o.log, [[_b(d), c] for d, c in o.items], _special(o.expires_at), o.at],
    Touch: lambda o: ["touch", o.key, _special(o.expires_at)],
    Expire: lambda o: ["exp", o.prefix, o.expires_at],
    Trim: lambda o: ["trim", o.log, o.before],
    Load: lambda o: ["load", _record(o.record)],
    LoadEntries: lambda o: ["loadents", o.log, [_entry(e) for e in o.entries], o.expires_at],
    Rewrite: lambda o: ["rewrite", o.log, o.seq, _b(o.data), o.codec],
}

_DECODE: Final[dict[str, Callable[..., Op]]] = {
    "put": lambda k, d, c, e, x: Put(k, _unb(d), c, _back(e), _back(x)),
    "del": lambda k, e: Delete(k, _back(e)),
    "app": lambda log, items, x, at: Append(log, tuple((_unb(d), c) for d, c in items), _back(x), at),
    "touch": lambda k, x: Touch(k, _back(x)),
    "exp": lambda p, x: Expire(p, x),
    "trim": lambda log, before: Trim(log, before),
    "load": lambda r: Load(Record(r[0], _unb(r[1]), *r[2:])),
    "loadents": lambda log, es, x: LoadEntries(
        log, tuple(Entry(log, s, _unb(d), c, t) for s, d, c, t in es), x
    ),
    "rewrite": lambda log, seq, d, c: Rewrite(log, seq, _unb(d), c),
}


def encode(ops: Sequence[Op], now: float) -> bytes:
    """``ops`` and the batch clock as one queue entry."""
    return json.dumps({"now": now, "ops": [_ENCODE[type(op)](op) for op in ops]}, separators=(",", ":")).encode()


def decode(data: bytes, where: str) -> tuple[list[Op], float]:
    """The ops and clock of a queue entry; a :class:`CorruptionError` naming ``where`` if unreadable."""
    try:
        doc = json.loads(data)
        return [_DECODE[op[0]](*op[1:]) for op in doc["ops"]], float(doc["now"])
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise CorruptionError(
            f"the write-behind queue entry {where} cannot be decoded ({exc}); it stays in Redis — "
            "inspect it with redis-cli and report it",
            where,
        ) from None
