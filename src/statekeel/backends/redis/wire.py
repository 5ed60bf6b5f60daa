"""How a batch becomes the script's arguments, and its reply the ops' results.

The names of a store's Redis keys and the registry's ranges are in :mod:`.keyspace`
(re-exported here, where the backends have always found them).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ...errors import ConflictError, CorruptionError, InvalidInputError
from ...protocol import (
    ANY,
    KEEP,
    Append,
    Delete,
    Expire,
    Load,
    LoadEntries,
    Op,
    OpResult,
    Put,
    Record,
    Rewrite,
    Touch,
    Trim,
    keys,
    op_target,
)
from ...protocol.batch import check_entry_seqs
from ...protocol.integrity import base_sum, entry_sum, record_sum, seal
from .._dispatch import handlers
from .keyspace import Layout as Layout
from .keyspace import LexRange as LexRange
from .keyspace import PartitionRange as PartitionRange
from .keyspace import in_one_partition as in_one_partition
from .keyspace import member_range as member_range
from .keyspace import prefix_range as prefix_range
from .keyspace import registry_member as registry_member
from .keyspace import registry_members as registry_members
from .keyspace import registry_start as registry_start

Arg = str | bytes

EXACT = 2**53 - 1
"""Lua numbers are doubles: the largest integer (version, seq) they hold exactly."""
LATEST = EXACT / 1000
"""The largest expiry, in seconds, whose milliseconds Lua and PEXPIREAT still hold exactly."""


# -- batches ----------------------------------------------------------------------
@dataclass
class Batch:
    """One apply() as the APPLY script's KEYS and ARGV."""

    keys: list[str] = field(default_factory=list)
    """One declared key per partition (the ``keys`` index): what routes the script."""
    blob: bytes = b""
    """ARGV[2]: every field of every op, each prefixed by its length (4 bytes, big-endian)."""
    bases: list[str] = field(default_factory=list)
    """For each script-level op, the base of its partition."""
    owners: list[int] = field(default_factory=list)
    """For each script-level op, the index of the op it came from."""
    spans: list[tuple[int, int]] = field(default_factory=list)
    """For each op, the slice of script results that make up its result."""
    creates: dict[str, str] = field(default_factory=dict)
    """Base -> partition, for each partition the batch may create records or logs in."""
    light: bool = False
    """True when the LIGHT script can run it (:func:`light`): the everyday batch, checked more cheaply."""


Expander = Callable[[str, Collection[str]], list[PartitionRange]]
"""Resolves the prefix of an Expire into the partition intervals it covers,
given the partitions that earlier ops of the batch may create."""
Expand = Callable[[str], list[PartitionRange]]
"""An :data:`Expander` bound to the partitions the batch creates so far."""

_LENGTH = struct.Struct(">I").pack
_SHORT = 1024
_LENGTHS = tuple(_LENGTH(n) for n in range(_SHORT))
"""The length prefixes of fields shorter than ``_SHORT`` (most are: names, codecs, numbers), made once."""


class Context(NamedTuple):
    """What encoding a batch's ops needs besides the op itself (a tuple: built once per batch, cheaply)."""

    stamp: str
    """The created_at of appended entries (the batch's ``now``)."""
    expand: Expand
    """Resolves an Expire's prefix into partition intervals."""
    next_seq: Mapping[str, int]
    """This handle's guess of each log's next seq (from its last append); see :func:`_append`."""


def encode(layout: Layout, ops: Sequence[Op], now: float, expand: Expander, next_seq: Mapping[str, int]) -> Batch:
    """The script arguments of ``ops``; ``now`` stamps appended entries.

    One binary argument instead of one argument per field: redis-py packs
    and Redis copies three arguments, not dozens (about 15 µs per batch).
    Every op is checked here, before anything is sent, so a bad one raises
    :class:`InvalidInputError` and the batch writes nothing.
    """
    batch = Batch()
    blob: list[bytes] = []  # each field's length (4 bytes), then the field: joined once at the end
    add = blob.append

    def expand_here(prefix: str) -> list[PartitionRange]:
        return expand(prefix, batch.creates.values())

    ctx = Context(_time(now, "the clock"), expand_here, next_seq)

    for index, (op, step) in enumerate(zip(ops, handlers(OPS, ops, "the redis:// backend"))):
        start = len(batch.owners)
        for wire in step.encode(layout, op, ctx):
            for x in wire:
                if not isinstance(x, bytes):
                    try:
                        x = x.encode()
                    except (UnicodeEncodeError, AttributeError):
                        x = _field(x, op)  # raises, naming what is wrong
                n = len(x)
                add(_LENGTHS[n] if n < _SHORT else _LENGTH(n))
                add(x)
            base = str(wire[1])
            batch.bases.append(base)
            batch.owners.append(index)
            if base + "keys" not in batch.keys:
                batch.keys.append(base + "keys")
        batch.spans.append((start, len(batch.owners)))
        if step.creates is not None:
            part = keys.partition(step.creates(op))
            batch.creates[layout.base(part)] = part
    batch.blob = b"".join(blob)
    batch.light = light(ops)
    return batch


def light(ops: Sequence[Op]) -> bool:
    """True if ``ops`` are Puts, Deletes and Appends naming each key and each log once.

    Such ops do not depend on each other (no op sees another's write), which is what
    lets the LIGHT script (:mod:`.lua_light`) judge each against its stored header alone.
    """
    records: set[str] = set()
    logs: set[str] = set()
    for op in ops:
        if type(op) is Append:
            name, seen = op.log, logs
        elif type(op) is Put or type(op) is Delete:
            name, seen = op.key, records
        else:
            return False
        if name in seen:
            return False
        seen.add(name)
    return True


def utf8(text: str, what: str) -> bytes:
    """``text`` as UTF-8; a lone surrogate (which UTF-8 cannot hold) is bad input, not a driver error."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        raise InvalidInputError(
            f"{what} {text!r} holds a lone surrogate, which is not valid UTF-8 and cannot be stored in Redis; "
            "decode the text properly (e.g. bytes.decode('utf-8')) before using it"
        ) from None
    except AttributeError:
        raise InvalidInputError(f"{what} must be a str, got {type(text).__name__}") from None


def _field(value: Arg, op: Op) -> bytes:
    if isinstance(value, bytes):
        return value
    return utf8(value, f"a name in a {type(op).__name__} of {op_target(op)!r}")


def _data(data: object, op: Op) -> bytes:
    """The op's encoded value, checked before its checksum is computed over it."""
    if isinstance(data, bytes):
        return data
    raise InvalidInputError(
        f"a {type(op).__name__} of {op_target(op)!r} holds a {type(data).__name__} where the encoded value "
        "(bytes) belongs; store values through the codec, which encodes them to bytes"
    )


def _put(layout: Layout, op: Put, ctx: Context) -> list[list[Arg]]:
    data = _data(op.data, op)
    return [["P", layout.base_of(op.key), op.key, data, op.codec, _expect(op.expect), _exp(op.expires_at),
             str(base_sum(op.key, op.codec, data))]]  # fmt: skip


def _delete(layout: Layout, op: Delete, ctx: Context) -> list[list[Arg]]:
    return [["D", layout.base_of(op.key), op.key, _expect(op.expect)]]


def _append(layout: Layout, op: Append, ctx: Context) -> list[list[Arg]]:
    """Frames sealed with the seqs this handle guesses (its last append to the log said which).

    The script numbers the entries; when the guess was right (one writer per log,
    the usual case) it stores the frames as they came, otherwise it shifts each
    checksum by the difference — so a wrong guess costs time, never correctness.
    """
    log, stamp = op.log, ctx.stamp
    seq = ctx.next_seq.get(log, 1) if op.at is None else int(_int(op.at, "Append.at"))
    frames: list[Arg] = []
    for data, codec in op.items:
        frames.append(frame(stamp, codec, _data(data, op), seal(base_sum(log, codec, data), seq + len(frames))))
    guess = str(seq) if op.at is None else f"={seq}"  # '=': the precondition, not a guess
    return [["A", layout.base_of(log), log, _exp(op.expires_at), guess, str(len(frames)), *frames]]


def _touch(layout: Layout, op: Touch, ctx: Context) -> list[list[Arg]]:
    refresh = "" if op.refresh is None else str(op.refresh)  # a TTL refresh: the version read
    return [["T", layout.base_of(op.key), op.key, _exp(op.expires_at), refresh]]


def _expire(layout: Layout, op: Expire, ctx: Context) -> list[list[Arg]]:
    utf8(op.prefix, "the prefix of an Expire")  # before ctx.expand walks the registry with it
    exp = _exp(op.expires_at)
    return [["E", layout.base(part), lo, hi, exp] for part, lo, hi in ctx.expand(op.prefix)]


def _trim(layout: Layout, op: Trim, ctx: Context) -> list[list[Arg]]:
    return [["R", layout.base_of(op.log), op.log, _int(op.before, "Trim.before")]]


def _rewrite(layout: Layout, op: Rewrite, ctx: Context) -> list[list[Arg]]:
    data, seq = _data(op.data, op), _int(op.seq, "Rewrite.seq")
    checksum = _SUM.pack(entry_sum(op.log, op.codec, data, op.seq))
    return [["W", layout.base_of(op.log), op.log, seq, data, op.codec, checksum]]


def _load(layout: Layout, op: Load, ctx: Context) -> list[list[Arg]]:
    r = op.record
    data, version = _data(r.data, op), _int(r.version, "Load.record.version")
    return [["L", layout.base_of(r.key), r.key, data, r.codec, version, _time(r.created_at, "created_at"),
             _time(r.updated_at, "updated_at"), _exp(r.expires_at),
             str(record_sum(r.key, r.codec, data, r.version))]]  # fmt: skip


def _load_entries(layout: Layout, op: LoadEntries, ctx: Context) -> list[list[Arg]]:
    """Imported entries know their seq: their checksums are whole."""
    check_entry_seqs(op)
    flat: list[Arg] = []
    for e in op.entries:
        created, data = _time(e.created_at, "Entry.created_at"), _data(e.data, op)
        seq = _int(e.seq, "Entry.seq")
        flat += [seq, created, frame(created, e.codec, data, entry_sum(op.log, e.codec, data, e.seq))]
    return [["M", layout.base_of(op.log), op.log, _exp(op.expires_at), str(len(op.entries)), *flat]]


_SUM = struct.Struct(">I")


def frame(created: str, codec: str, data: bytes, checksum: int) -> bytes:
    """One log entry as a list element: ``#``, the checksum (4 bytes), ``created_at|len(codec)|codec``, data."""
    try:
        name = codec.encode()
    except (UnicodeEncodeError, AttributeError):
        name = utf8(codec, "a codec name")  # raises, saying what is wrong
    return b"#%s%s|%d|%s%s" % (_SUM.pack(checksum), created.encode(), len(name), name, data)


def unframe(raw: bytes) -> tuple[float, str, bytes, int | None]:
    """(created_at, codec, data, stored checksum) of a list element made by :func:`frame`; raises ValueError.

    An element without the leading ``#`` was written before checksums: its checksum is None.
    """
    stored = None
    if raw[:1] == b"#":
        stored, raw = _SUM.unpack_from(raw, 1)[0], raw[5:]
    created, size, rest = raw.split(b"|", 2)
    n = int(size)
    if not 0 <= n <= len(rest):
        raise ValueError(f"its codec name is {n} bytes long but {len(rest)} are left")
    return float(created), rest[:n].decode(), rest[n:], stored


def _float(value: float) -> str:
    """The exact text of a float: the script stores it verbatim, reads give it back."""
    return repr(float(value))


def _time(value: object, what: str, limit: float = math.inf) -> str:
    """A timestamp the script can store and compute with: a finite number, at most ``limit``."""
    if isinstance(value, (int, float)) and math.isfinite(value) and abs(value) <= limit:
        return _float(value)
    raise InvalidInputError(
        f"{what} must be a finite number of seconds since the epoch"
        + (f" of at most {limit:.0f}" if limit < math.inf else "")
        + f", got {value!r}; nothing was written"
    )


def _int(value: object, what: str) -> str:
    """An integer the script holds exactly (Lua numbers are doubles)."""
    if isinstance(value, int) and -EXACT <= value <= EXACT:
        return str(int(value))
    raise InvalidInputError(
        f"{what} must be an integer between -(2**53 - 1) and 2**53 - 1 (what Redis' Lua holds exactly), "
        f"got {value!r}; nothing was written"
    )


def _expect(expect: object) -> str:
    """``*`` any, ``-`` none, a version, or ``x``: a version no record can have (a sure conflict, as memory://)."""
    if expect is ANY:
        return "*"
    if expect is None:
        return "-"
    if isinstance(expect, int):
        return str(int(expect)) if 0 <= expect <= EXACT else "x"
    raise InvalidInputError(f"expect must be ANY, None or a version (int), got {expect!r}; nothing was written")


def _exp(expires_at: object) -> str:
    if expires_at is KEEP:
        return "K"
    return "-" if expires_at is None else _time(expires_at, "expires_at", LATEST)


# -- results ----------------------------------------------------------------------
# The script answers with one string of space-separated tokens (cheaper to parse
# than nested arrays): ``1 FRESH R1 R2 ...`` or ``0 OP CURRENT`` for a conflict.
# FRESH lists, comma-separated, the script-level ops whose partition was empty
# before the batch (``-`` if none); a Put's result is ``version,created_at,expires_at``.


def decode(ops: Sequence[Op], batch: Batch, reply: bytes, now: float) -> tuple[list[OpResult], list[str]]:
    """apply()'s results and the partitions the batch created from nothing, or the conflict."""
    tokens = reply.split(b" ")
    if tokens[0] != b"1":
        _raise_refusal(ops, batch, reply)
    values = tokens[2:]
    results = [OPS[type(op)].result(op, values[a:b], now) for op, (a, b) in zip(ops, batch.spans)]
    return results, _fresh(batch, tokens[1])


def _fresh(batch: Batch, token: bytes) -> list[str]:
    if token == b"-":
        return []
    bases = {batch.bases[int(i) - 1] for i in token.split(b",")}
    return [part for base, part in batch.creates.items() if base in bases]


def _raise_refusal(ops: Sequence[Op], batch: Batch, reply: bytes) -> None:
    """The script wrote nothing: ``0 OP CURRENT`` a conflict, ``2 OP -`` an argument it
    refused, ``3 OP FIELD NAME`` a header field of record or log NAME that is not a number."""
    code, wire_op, rest = reply.split(b" ", 2)
    op = ops[batch.owners[int(wire_op) - 1]]
    if code == b"0":
        actual = int(rest)
        assert isinstance(op, (Put, Delete)) and op.expect is not ANY
        raise ConflictError(op.key, op.expect, None if actual < 0 else actual)
    if code == b"4":
        assert isinstance(op, Append) and op.at is not None
        raise ConflictError(op.log, op.at - 1, int(rest))
    if code == b"3":
        field, name = rest.decode().split(" ", 1)
        raise CorruptionError(
            f"the stored header of {name!r} is damaged (its field {field!r} is not a number), so the batch "
            "was refused and nothing was written; run `statekeel doctor`, then restore or delete it",
            name,
        )
    raise InvalidInputError(f"the Redis script refused {op!r} as malformed; nothing was written")


def _put_result(op: Put, values: list[bytes], now: float) -> Record:
    version, created, expires = values[0].split(b",")
    return Record(op.key, op.data, op.codec, int(version), float(created), now,
                  float(expires) if expires else None)  # fmt: skip


def _loaded(op: Load, values: list[bytes], now: float) -> Record:
    return op.record


def _flag(op: Delete | Touch | Rewrite, values: list[bytes], now: float) -> bool:
    return bool(sum(int(v) for v in values))


def _count(op: Append | Expire | Trim | LoadEntries, values: list[bytes], now: float) -> int:
    return sum(int(v) for v in values)


# -- one row per op ---------------------------------------------------------------
def _key(op: Put) -> str:
    return op.key


def _record_key(op: Load) -> str:
    return op.record.key


def _log(op: Append | LoadEntries) -> str:
    return op.log


@dataclass(frozen=True, slots=True)
class OpWire:
    """How one op type travels to the APPLY script and back."""

    encode: Callable[[Layout, Any, Context], list[list[Arg]]]
    """The op as script-level ops (an Expire becomes one per partition it covers)."""
    creates: Callable[[Any], str] | None
    """The key or log whose partition the op may create records or logs in; None if none."""
    result: Callable[[Any, list[bytes], float], OpResult]
    """The op's result from its script-level results and the batch's ``now``."""


OPS: dict[type[Op], OpWire] = {
    Put: OpWire(_put, _key, _put_result),
    Delete: OpWire(_delete, None, _flag),
    Append: OpWire(_append, _log, _count),
    Touch: OpWire(_touch, None, _flag),
    Expire: OpWire(_expire, None, _count),
    Trim: OpWire(_trim, None, _count),
    Load: OpWire(_load, _record_key, _loaded),
    LoadEntries: OpWire(_load_entries, _log, _count),
    Rewrite: OpWire(_rewrite, None, _flag),
}
"""How each op type is encoded and decoded: one row per op."""
