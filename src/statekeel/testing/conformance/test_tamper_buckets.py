"""A big partition's chain head lists its records in buckets — and still finds every edit beneath the API.

Past :data:`~statekeel.core.chain_plan.SPILL` records a partition's head (its *root*) lists its
records in bucket records, each listed in the root by version and MAC, so a write rewrites the
root and one bucket however many records the partition holds. These tests fill a partition past
that (the app's keys: one partition), then check on every backend that reads and ``verify`` still
refuse a record deleted or rolled back, a bucket deleted, rolled back or planted, and that the
buckets double as the partition grows while several writers interleave.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

import statekeel
from statekeel import Encryption, Integrity
from statekeel.core import layout
from statekeel.core.chain import Head
from statekeel.core.chain_plan import SPILL
from statekeel.core.chained import ChainedBackend
from statekeel.errors import IntegrityError
from statekeel.protocol import ANY, Delete, Expire, Load, Put, Record, keys

KEY = base64.b64encode(b"B" * 32).decode()


@pytest.fixture(params=["chain", "chain+encryption"])
def bucketed(request: pytest.FixtureRequest, store_url: str) -> Iterator[statekeel.Store]:
    encryption = Encryption(master_key=KEY) if "encryption" in request.param else None
    with statekeel.open(store_url, integrity=Integrity(key=KEY), encryption=encryption) as store:
        yield store


def _chain(store: statekeel.Store) -> ChainedBackend:
    backend = store.backend
    assert isinstance(backend, ChainedBackend)
    return backend


def _fill(store: statekeel.Store, n: int, start: int = 0) -> str:
    """``n`` app keys (one partition), in batches of 10; the partition."""
    chain = _chain(store)
    for lo in range(start, start + n, 10):
        chain.apply([Put(store.app._full_key(f"k{i}"), str(i).encode(), "json", ANY, None)
                     for i in range(lo, min(lo + 10, start + n))])  # fmt: skip
    return keys.partition(store.app._full_key("k0"))


def _root(store: statekeel.Store, part: str) -> tuple[Record, Head]:
    rec = store.storage.get(layout.chain_head_key(part))
    assert rec is not None
    return rec, _chain(store).head_of(rec, part)


def _bucket_of(store: statekeel.Store, part: str, name: str) -> str:
    """The key of the bucket record that lists the app key ``name``."""
    from statekeel.core.chain import bucket_index

    root = _root(store, part)[1]
    return layout.chain_bucket_key(part, bucket_index(store.app._full_key(name), root.bits))


def test_a_big_partition_lists_its_records_in_buckets(bucketed: statekeel.Store) -> None:
    n = 3 * SPILL + 5
    part = _fill(bucketed, n)
    rec, root = _root(bucketed, part)
    assert root.bits >= 2 and not root.records and root.total() == n
    assert all(bucketed.storage.get(layout.chain_bucket_key(part, i)) is not None for i in root.buckets)
    assert len(rec.data) < 40 * SPILL  # the root lists buckets, not records
    assert [bucketed.app.get(f"k{i}") for i in range(n)] == list(range(n))
    fresh = _chain(bucketed).unanchored()  # another handle: nothing cached, buckets read on demand
    assert fresh.get(bucketed.app._full_key("k7")) is not None
    assert len(fresh.listed(part).records) == n
    assert len(list(bucketed.app.keys())) == n  # scans: every bucket read with each page
    report = bucketed.verify()
    assert report.ok, report.failures


def test_records_in_buckets_deleted_or_rolled_back_are_found(bucketed: statekeel.Store) -> None:
    part = _fill(bucketed, 2 * SPILL)
    old = bucketed.storage.get(bucketed.app._full_key("k3"))
    bucketed.app.put("k3", 333)
    assert old is not None
    bucketed.storage.apply([Load(old)])  # version 1, with its own valid MAC
    with pytest.raises(IntegrityError, match="older version"):
        bucketed.app.get("k3")
    bucketed.storage.apply([Delete(bucketed.app._full_key("k5"))])
    with pytest.raises(IntegrityError, match="missing"):
        bucketed.app.get("k5")
    failures = "\n".join(bucketed.verify().failures)
    assert "k3" in failures and "k5" in failures
    assert _root(bucketed, part)[1].bits


def test_a_bucket_deleted_rolled_back_or_planted_is_found(bucketed: statekeel.Store) -> None:
    part = _fill(bucketed, 2 * SPILL)
    bucket = _bucket_of(bucketed, part, "k1")
    old = bucketed.storage.get(bucket)
    bucketed.app.put("k1", 111)  # the bucket moves on
    assert old is not None and _bucket_of(bucketed, part, "k1") == bucket
    bucketed.storage.apply([Load(old)])  # its older version, with its own valid MAC
    with pytest.raises(IntegrityError, match="older bucket"):
        bucketed.app.get("k1")
    assert any("older bucket" in f for f in bucketed.verify().failures)
    bucketed.storage.apply([Delete(bucket)])
    with pytest.raises(IntegrityError, match="bucket .* missing"):
        bucketed.app.get("k1")
    assert any("missing" in f for f in bucketed.verify().failures)
    spare = layout.chain_bucket_key(part, 1 << 12)  # an index the root does not list
    bucketed.storage.apply([Load(replace(old, key=spare))])
    assert any("not in its partition's root head" in f for f in bucketed.verify().failures)


def test_buckets_double_as_writers_interleave(bucketed: statekeel.Store) -> None:
    """Two handles with their own caches write the same growing partition in turns: each finds the other's
    root and buckets moved, plans again, and the buckets double on the way; everything reads back."""
    one, two = _chain(bucketed), _chain(bucketed).unanchored()
    part = keys.partition(bucketed.app._full_key("k0"))
    n = 0
    for writer in (one, two) * 10:
        writer.apply([Put(bucketed.app._full_key(f"k{i}"), str(i).encode(), "json", ANY, None)
                      for i in range(n, n + 15)])  # fmt: skip
        n += 15
    assert _root(bucketed, part)[1].bits >= 3
    for writer in (one, two):
        assert len(writer.listed(part).records) == n
    assert [bucketed.app.get(f"k{i}") for i in range(0, n, 7)] == list(range(0, n, 7))
    report = bucketed.verify()
    assert report.ok, report.failures


def test_a_prefix_expiry_reaches_every_bucket(bucketed: statekeel.Store) -> None:
    part = _fill(bucketed, 2 * SPILL)
    _chain(bucketed).apply([Expire(part + "/", time.time() + 0.3)])
    assert bucketed.app.get("k9") == 9
    time.sleep(0.4)
    assert bucketed.app.get("k9") is None and bucketed.app.get("k50") is None
    report = bucketed.verify()
    assert report.ok, report.failures
    _fill(bucketed, SPILL + 3, start=1000)  # the partition starts again
    assert bucketed.app.get("k1002") == 1002
