"""``Touch(refresh=)``: a TTL refresh after a read, applied only to the record as it was read.

A reader that saw an expiring record at version v renews its expiry — unless the record
was rewritten since (another version), or deleted and put again without an expiry (a record
put again starts at version 1 once more, so the version alone could match): then the refresh
does nothing and returns False, and what the writer stored stays as it was written.
"""

from __future__ import annotations

import time

import pytest

from statekeel import InvalidInputError, Store
from statekeel.protocol import Append, Delete, Expire, Op, Put, Touch

KEY = "r/x/item"


def _put(store: Store, data: bytes, expires_at: float | None) -> int:
    rec = store.storage.apply([Put(KEY, data, "json", expires_at=expires_at)])[0]
    return rec.version  # type: ignore[union-attr]


def test_a_refresh_renews_the_version_read(store: Store) -> None:
    b = store.storage
    version = _put(store, b"1", time.time() + 60)
    later = time.time() + 3600
    assert b.apply([Touch(KEY, later, refresh=version)]) == [True]
    got = b.get(KEY)
    assert got is not None and got.expires_at == pytest.approx(later) and got.version == version
    assert got.data == b"1"


def test_a_refresh_of_a_rewritten_record_changes_nothing(store: Store) -> None:
    b = store.storage
    read = _put(store, b"1", time.time() + 60)
    newer = time.time() + 120
    _put(store, b"2", newer)  # written between the read and the refresh
    assert b.apply([Touch(KEY, time.time() + 5, refresh=read)]) == [False]
    got = b.get(KEY)
    assert got is not None and got.data == b"2" and got.version == read + 1
    assert got.expires_at == pytest.approx(newer)


def test_a_refresh_never_gives_an_expiry_to_a_record_put_again_without_one(store: Store) -> None:
    b = store.storage
    read = _put(store, b"1", time.time() + 60)
    b.apply([Delete(KEY)])
    again = _put(store, b"2", None)  # the same version number again, without an expiry
    assert again == read == 1
    assert b.apply([Touch(KEY, time.time() + 5, refresh=read)]) == [False]
    got = b.get(KEY)
    assert got is not None and got.data == b"2" and got.expires_at is None


def test_a_refresh_of_nothing_or_of_a_log_is_false(store: Store) -> None:
    b = store.storage
    assert b.apply([Touch(KEY, time.time() + 5, refresh=1)]) == [False]
    assert b.get(KEY) is None
    b.apply([Append("r/x/log", ((b"1", "json"),), expires_at=time.time() + 60)])
    before = b.log_info("r/x/log")
    assert b.apply([Touch("r/x/log", time.time() + 3600, refresh=1)]) == [False]
    after = b.log_info("r/x/log")
    assert before is not None and after is not None and after.expires_at == pytest.approx(before.expires_at)


def test_a_refresh_beside_other_writes_of_the_batch(store: Store) -> None:
    b = store.storage
    version = _put(store, b"1", time.time() + 60)
    later = time.time() + 3600
    res = b.apply([Put("r/x/other", b"o", "json"), Touch(KEY, later, refresh=version), Delete("r/y/none")])
    assert res[1:] == [True, False]
    got = b.get(KEY)
    assert got is not None and got.expires_at == pytest.approx(later)
    assert b.get("r/x/other") is not None


@pytest.mark.parametrize("other", ["put", "delete", "touch", "expire"])
def test_a_refresh_must_be_the_only_write_of_its_record_in_a_batch(store: Store, other: str) -> None:
    b = store.storage
    version = _put(store, b"1", time.time() + 60)
    before = b.get(KEY)
    seconds: dict[str, Op] = {
        "put": Put(KEY, b"2", "json"),
        "delete": Delete(KEY),
        "touch": Touch(KEY),
        "expire": Expire("r/x/", time.time() + 5),
    }
    second = seconds[other]
    with pytest.raises(InvalidInputError, match="batch of its own"):
        b.apply([Put("r/y/first", b"f", "json"), second, Touch(KEY, time.time() + 3600, refresh=version)])
    assert b.get(KEY) == before and b.get("r/y/first") is None  # nothing was written
