"""Ops whose fields are not what the protocol declares are refused alike by every backend.

:meth:`Backend.apply` called directly (``store.storage.apply``, a migration script, a
backend's own tests) with a ``str`` where bytes belong, a NaN or infinite expiry, a
number past 64 bits where a seq belongs, a lone surrogate in a key or codec name, a malformed ``Append``
item or ``at`` below 1 raises :class:`~statekeel.errors.InvalidInputError` naming the
op and the field, and the whole batch writes nothing — where backends used to store
some of these (SQLite kept a NaN expiry and an int key, the files backend wrote a
record it could not read back) and crash on others with a driver's ``TypeError``.
"""

from __future__ import annotations

import math
import re

import pytest

from statekeel import ConflictError, InvalidInputError, Store
from statekeel.protocol import (
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

K, LOG = "b/x/k", "b/x/log"
BIG = 2**64

BAD: dict[str, tuple[Op, str]] = {
    "str data": (Put(K, "1", "json"), "data= must be bytes"),  # type: ignore[arg-type]
    "bytearray data": (Put(K, bytearray(b"1"), "json"), "data= must be bytes"),  # type: ignore[arg-type]
    "int key": (Put(5, b"1", "json"), "key= must be a str"),  # type: ignore[arg-type]
    "surrogate key": (Put("b/x/\ud800", b"1", "json"), "lone surrogate"),
    "surrogate codec": (Put(K, b"1", "js\udfff"), "lone surrogate"),
    "int codec": (Put(K, b"1", 5), "codec= must be a str"),  # type: ignore[arg-type]
    "NaN expiry": (Put(K, b"1", "json", expires_at=math.nan), "expires_at"),
    "infinite expiry": (Put(K, b"1", "json", expires_at=math.inf), "expires_at"),
    "huge int expiry": (Put(K, b"1", "json", expires_at=10**400), "expires_at"),
    "str expiry": (Touch(K, expires_at="soon"), "expires_at"),  # type: ignore[arg-type]
    "str refresh": (Touch(K, 1.0, refresh="1"), "refresh="),  # type: ignore[arg-type]
    "refresh 0": (Touch(K, 1.0, refresh=0), "refresh="),
    "bool refresh": (Touch(K, 1.0, refresh=True), "refresh="),
    "refresh past 64 bits": (Touch(K, 1.0, refresh=BIG), "refresh="),
    "bool expect": (Put(K, b"1", "json", expect=True), "expect"),
    "float expect": (Delete(K, expect=1.0), "expect="),  # type: ignore[arg-type]
    "append at 0": (Append(LOG, ((b"1", "json"),), at=0), "at= must be"),
    "append at past 64 bits": (Append(LOG, ((b"1", "json"),), at=BIG), "at= must be"),
    "append bare bytes": (Append(LOG, (b"1",)), "items[0]"),  # type: ignore[arg-type]
    "append str item": (Append(LOG, (("1", "json"),)), "items[0]: data="),  # type: ignore[arg-type]
    "append NaN expiry": (Append(LOG, ((b"1", "json"),), expires_at=math.nan), "expires_at"),
    "expire None prefix": (Expire(None, 1.0), "prefix= must be a str"),  # type: ignore[arg-type]
    "expire keeps": (Expire("b/x/", KEEP), "expires_at"),  # type: ignore[arg-type]
    "trim str": (Trim(LOG, "2"), "before"),  # type: ignore[arg-type]
    "rewrite float seq": (Rewrite(LOG, 1.0, b"1", "json"), "seq="),  # type: ignore[arg-type]
    "rewrite str data": (Rewrite(LOG, 1, "1", "json"), "data"),  # type: ignore[arg-type]
    "load NaN time": (Load(Record(K, b"1", "json", 1, math.nan, 1.0, None)), "created_at"),
    "load str version": (Load(Record(K, b"1", "json", "1", 1.0, 1.0, None)), "version="),  # type: ignore[arg-type]
    "load not a record": (Load({"key": K}), "record= must be a Record"),  # type: ignore[arg-type]
    "entries str data": (LoadEntries("b/x/log2", (Entry("b/x/log2", 1, "1", "json", 1.0),)), "entries[0]: data="),  # type: ignore[arg-type]
}


def _snapshot(store: Store) -> tuple[object, ...]:
    b = store.storage
    rec = b.get(K)
    info = b.log_info(LOG)
    return (rec and (rec.data, rec.version, rec.expires_at), info and (info.last_seq, info.expires_at),
            [(e.seq, e.data) for e in b.read(LOG)], [r.key for r in b.scan("b/")], b.log_info("b/x/log2"))  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_an_op_of_the_wrong_types_is_refused_and_the_batch_writes_nothing(store: Store, case: str) -> None:
    store.storage.apply([Put(K, b"1", "json"), Append(LOG, ((b"a", "json"),))])
    before = _snapshot(store)
    op, says = BAD[case]
    with pytest.raises(InvalidInputError, match=re.escape(says)) as refused:
        store.storage.apply([Put(K, b"2", "json"), Append(LOG, ((b"b", "json"),)), op])
    assert "nothing was written" in str(refused.value)
    assert _snapshot(store) == before


def test_a_non_finite_clock_is_refused(store: Store) -> None:
    with pytest.raises(InvalidInputError, match="now="):
        store.storage.apply([Put(K, b"1", "json")], now=math.nan)
    assert store.storage.get(K) is None


def test_well_formed_edges_are_accepted(store: Store) -> None:
    """An int expiry stays valid; an int ``expect`` no version has is a conflict, not bad input."""
    b = store.storage
    far = 4_000_000_000
    (rec,) = b.apply([Put(K, b"1", "json", expires_at=far)])
    assert isinstance(rec, Record) and rec.expires_at == far
    for expect in (0, -1):
        with pytest.raises(ConflictError):
            b.apply([Put(K, b"2", "json", expect=expect)])
