"""Each write op of the PostgreSQL backend as a fragment of SQL (see :mod:`.sql`).

:data:`OPS` has one row per op type: how to turn an op into a fragment and its
parameters, which rows it writes (whether it may share a statement with the
other ops of its batch) and how to read its result back from its columns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from ...errors import InvalidInputError
from ...protocol import (
    Any_,
    Append,
    Delete,
    Expire,
    ExpiresAt,
    Keep,
    Load,
    LoadEntries,
    Op,
    OpResult,
    Put,
    Record,
    Rewrite,
    Touch,
    Trim,
)
from ...protocol.batch import check_entry_seqs
from ...protocol.integrity import entry_sum, record_sum
from ...protocol.keys import prefix_end
from .rows import crc, sum_param
from .sql import APPEND_VALUES_MAX

__all__ = ["OPS", "OpSQL", "Params", "Part", "Row", "Target", "clamp", "one_statement", "payload"]

Params: TypeAlias = dict[str, Any]
Part: TypeAlias = tuple[str, Params]
"""A write operation as (fragment name, parameters without the op prefix)."""
Row: TypeAlias = tuple[Any, ...]
Target: TypeAlias = tuple[str, str]
"""A row a write changes: ("kv", key) or ("log", name)."""


@dataclass(frozen=True, slots=True)
class OpSQL:
    """How one op type runs on PostgreSQL."""

    part: Callable[[Any, bool], Part | None]
    """The op as (fragment name, parameters); the flag says "json" payloads must stay
    bytes. None: the op runs as whole statements of its own (``LoadEntries``)."""
    targets: Callable[[Any], set[Target] | None]
    """The rows the op writes; None: it shares a statement with no other op."""
    result: Callable[[Any, Row, float], OpResult]
    """The op's result from its columns of the result row and the batch's ``now``."""


BIGINT_MAX = 2**63 - 1
"""Largest ``bigint``: versions and seqs are stored as one."""
SEQ_MAX = 2**62 - 1
"""Bound of :func:`clamp`."""


# -- values -------------------------------------------------------------------
def payload(data: bytes, codec: str, raw: bool) -> tuple[bytes | None, str | None]:
    """(data, doc): plain JSON goes to the ``json`` column ``doc`` when it can."""
    if raw or codec != "json":
        return data, None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data, None
    if "\\u0000" in text or "\x00" in text:
        return data, None
    return None, text


def _expiry(expires_at: ExpiresAt) -> tuple[bool, float | None]:
    """(keep, new expiry) as the statements take them."""
    if isinstance(expires_at, Keep):
        return True, None
    return False, expires_at


def _expect(expect: int | None | Any_) -> int | None:
    """The expected version as a ``bigint`` parameter, refused here when it cannot be one.

    psycopg would send ``True`` as a boolean (PostgreSQL: "operator does not
    exist") and ``10**30`` as a numeric ("bigint out of range"): neither says
    what the caller got wrong.
    """
    if expect is None or isinstance(expect, Any_):
        return None
    if isinstance(expect, bool) or not isinstance(expect, int):
        raise InvalidInputError(f"expect={expect!r} is not a version: pass an int, None (create-only) or ANY")
    if not -BIGINT_MAX - 1 <= expect <= BIGINT_MAX:
        raise InvalidInputError(f"expect={expect} is out of range: versions fit in a signed 64-bit integer")
    return expect


def clamp(n: int) -> int:
    """A seq, bound or limit cut to ±(2**62 - 1): past any real seq, and no sum of two overflows
    a ``bigint`` (a limit of 10**30 means "no limit", not "bigint out of range")."""
    return max(-SEQ_MAX, min(SEQ_MAX, n))


# -- operations as fragments ---------------------------------------------------
def one_statement(ops: Sequence[Op], steps: Sequence[OpSQL], parts: Sequence[Part | None]) -> bool:
    """Whether ``ops`` can run as joined fragments (one statement, or several of a few operations
    each: :func:`.sql.split`): CTEs of one statement do not see each other's writes, so no two
    operations may write the same row."""
    if any(p is None for p in parts):
        return False
    if len(ops) == 1:
        return True
    seen: set[Target] = set()
    for op, step in zip(ops, steps):
        targets = step.targets(op)
        if targets is None or not seen.isdisjoint(targets):
            return False
        seen |= targets
    return True


def _put(op: Put, raw: bool) -> Part:
    data, doc = payload(op.data, op.codec, raw)
    keep, exp = _expiry(op.expires_at)
    if isinstance(op.expect, Any_):
        kind = "put_any"
    else:
        kind = "put_new" if op.expect is None else "put_version"
    params = {"key": op.key, "data": data, "doc": doc, "codec": op.codec, "keep": keep, "exp": exp,
              "expect": _expect(op.expect), "crc": crc(op.key, op.codec, op.data)}  # fmt: skip
    return kind, params


def _delete(op: Delete, raw: bool) -> Part:
    kind = "delete_any" if isinstance(op.expect, Any_) else (
        "delete_new" if op.expect is None else "delete_version")
    return kind, {"key": op.key, "expect": _expect(op.expect)}


def _append(op: Append, raw: bool) -> Part:
    keep, exp = _expiry(op.expires_at)
    n = len(op.items)
    params: Params = {"log": op.log, "n": n, "keep": keep, "exp": exp, "at": op.at}
    payloads = [(*payload(data, codec, raw), codec) for data, codec in op.items]
    crcs = [crc(op.log, codec, data) for data, codec in op.items]  # SQL adds each entry's seq
    if 1 <= n <= APPEND_VALUES_MAX:
        for i, (data, doc, codec) in enumerate(payloads, 1):
            params[f"data{i}"], params[f"doc{i}"], params[f"codec{i}"] = data, doc, codec
            params[f"crc{i}"] = crcs[i - 1]
        return f"append{n}", params
    params["datas"] = [p[0] for p in payloads]
    params["docs"] = [p[1] for p in payloads]
    params["codecs"] = [p[2] for p in payloads]
    params["crcs"] = crcs
    return "append", params


def _touch(op: Touch, raw: bool) -> Part:
    keep, exp = _expiry(op.expires_at)
    if op.refresh is not None:
        return "refresh", {"key": op.key, "keep": keep, "exp": exp, "version": op.refresh}
    return "touch", {"key": op.key, "keep": keep, "exp": exp}


def _expire(op: Expire, raw: bool) -> Part:
    return "expire", {"lo": op.prefix, "hi": prefix_end(op.prefix), "exp": op.expires_at}


def _trim(op: Trim, raw: bool) -> Part:
    return "trim", {"log": op.log, "before": clamp(op.before)}


def _rewrite(op: Rewrite, raw: bool) -> Part:
    data, doc = payload(op.data, op.codec, raw)
    total = sum_param(entry_sum(op.log, op.codec, op.data, op.seq))
    return "rewrite", {"log": op.log, "seq": op.seq, "data": data, "doc": doc, "codec": op.codec, "sum": total}


def _load(op: Load, raw: bool) -> Part:
    r = op.record
    data, doc = payload(r.data, r.codec, raw)
    params = {"key": r.key, "data": data, "doc": doc, "codec": r.codec, "version": r.version,
              "created": r.created_at, "updated": r.updated_at, "exp": r.expires_at,
              "sum": sum_param(record_sum(r.key, r.codec, r.data, r.version))}  # fmt: skip
    return "load", params


def _whole_statements(op: LoadEntries, raw: bool) -> None:
    check_entry_seqs(op)  # before any statement runs: a refused batch writes nothing
    return None


# -- the rows each op writes ------------------------------------------------------
def _key(op: Put | Delete) -> set[Target]:
    return {("kv", op.key)}


def _record_key(op: Load) -> set[Target]:
    return {("kv", op.record.key)}


def _key_or_log(op: Touch) -> set[Target]:
    return {("kv", op.key), ("log", op.key)}


def _log(op: Append | Trim | Rewrite) -> set[Target]:
    return {("log", op.log)}


def _alone(op: Expire | LoadEntries) -> None:
    return None


# -- results -----------------------------------------------------------------------
def _put_result(op: Put, cols: Row, now: float) -> Record:
    return Record(op.key, op.data, op.codec, cols[0], cols[1], now, cols[2])


def _loaded(op: Load, cols: Row, now: float) -> Record:
    return op.record


def _flag(op: Delete | Touch | Rewrite, cols: Row, now: float) -> bool:
    return bool(cols[0])


def _count(op: Append | Expire | Trim | LoadEntries, cols: Row, now: float) -> int:
    return int(cols[0])


OPS: dict[type[Op], OpSQL] = {
    Put: OpSQL(_put, _key, _put_result),
    Delete: OpSQL(_delete, _key, _flag),
    Append: OpSQL(_append, _log, _count),
    Touch: OpSQL(_touch, _key_or_log, _flag),
    Expire: OpSQL(_expire, _alone, _count),
    Trim: OpSQL(_trim, _log, _count),
    Load: OpSQL(_load, _record_key, _loaded),
    LoadEntries: OpSQL(_whole_statements, _alone, _count),
    Rewrite: OpSQL(_rewrite, _log, _flag),
}
"""How each op type runs: one row per op."""
