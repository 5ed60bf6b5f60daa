"""A big partition's chain head lists its records in buckets — and still finds every edit beneath the API.

Past :data:`~statekeel.core.chain_plan.SPILL` records a partition's head (its *root*) lists its
records in bucket records, each listed in the root by version and MAC, so a write rewrites the
root and one bucket however many records the partition holds. These tests fill a partition past
that (the app's keys: one partition), then check on every backend that reads and ``verify`` still
refuse a record deleted or rolled back, a bucket deleted, rolled back or planted, and that the
buckets double as the partition grows while several writers interleave.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

import statekeel
from statekeel.core import layout
from statekeel.core.chain import Head
from statekeel.core.chain_plan import SPILL
from statekeel.core.chained import ChainedBackend
from statekeel.errors import IntegrityError
from statekeel.protocol import ANY, Delete, Expire, Load, Put, Record, keys
from statekeel.testing.conformance.test_tamper import CHAINED, open_chained


@pytest.fixture(params=CHAINED)
def bucketed(request: pytest.FixtureRequest, store_url: str) -> Iterator[statekeel.Store]:
    with open_chained(store_url, request.param) as store:
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


def _in_a_bucket(store: statekeel.Store, part: str, n: int) -> tuple[str, str, str]:
    """Two app keys among ``k0..k{n-1}`` that one bucket lists and the root does not, and that bucket's key."""
    from statekeel.core.chain import bucket_index

    root = _root(store, part)[1]
    by_bucket: dict[int, list[str]] = {}
    for k in range(n):
        where = store.app._full_key(f"k{k}")
        if where not in root.records:
            by_bucket.setdefault(bucket_index(where, root.bits), []).append(f"k{k}")
    i, names = next((i, names) for i, names in sorted(by_bucket.items()) if len(names) >= 2)
    return names[0], names[1], layout.chain_bucket_key(part, i)


def test_a_big_partition_lists_its_records_in_buckets(bucketed: statekeel.Store) -> None:
    n = 3 * SPILL + 5
    part = _fill(bucketed, n)
    rec, root = _root(bucketed, part)
    assert root.bits >= 2 and len(root.records) <= SPILL and root.total() >= n
    assert all(bucketed.storage.get(layout.chain_bucket_key(part, i)) is not None for i in root.buckets)
    assert len(rec.data) < 150 * SPILL  # a few dozen records at most, and the buckets' versions and MACs
    versions = {r.key: r.version for r in bucketed.storage.scan(layout.chain_head_key(part) + "~")}
    for v in range(5):  # the same few records written again: the root alone is rewritten
        bucketed.app.put("k1", v)
        bucketed.app.put("k2", v)
    assert {r.key: r.version for r in bucketed.storage.scan(layout.chain_head_key(part) + "~")} == versions
    assert _root(bucketed, part)[0].version == rec.version + 10
    assert bucketed.app.get("k1") == 4
    bucketed.app.put("k1", 1)
    bucketed.app.put("k2", 2)
    assert [bucketed.app.get(f"k{i}") for i in range(n)] == list(range(n))
    fresh = _chain(bucketed).unanchored()  # another handle: nothing cached, buckets read on demand
    assert fresh.get(bucketed.app._full_key("k7")) is not None
    assert len(fresh.listed(part).records) == n
    assert len(list(bucketed.app.keys())) == n  # scans: every bucket read with each page
    report = bucketed.verify()
    assert report.ok, report.failures


def test_records_in_buckets_deleted_or_rolled_back_are_found(bucketed: statekeel.Store) -> None:
    """Records listed in a bucket, and records the root lists itself (written since its last flush)."""
    part = _fill(bucketed, 3 * SPILL)
    cold, gone, _ = _in_a_bucket(bucketed, part, 3 * SPILL)
    for name in (cold, "k0"):
        old = bucketed.storage.get(bucketed.app._full_key(name))
        bucketed.app.put(name, 333)  # now listed in the root itself, at version 2
        assert old is not None
        bucketed.storage.apply([Load(old)])  # version 1, with its own valid MAC
        with pytest.raises(IntegrityError, match="older version"):
            bucketed.app.get(name)
    bucketed.storage.apply([Delete(bucketed.app._full_key(gone))])
    with pytest.raises(IntegrityError, match="missing"):
        bucketed.app.get(gone)
    failures = "\n".join(bucketed.verify().failures)
    assert f"/{cold}'" in failures and f"/{gone}'" in failures and "/k0'" in failures
    assert _root(bucketed, part)[1].bits


def test_a_bucket_deleted_rolled_back_or_planted_is_found(bucketed: statekeel.Store) -> None:
    part = _fill(bucketed, 3 * SPILL)
    name, other, bucket = _in_a_bucket(bucketed, part, 3 * SPILL)
    old = bucketed.storage.get(bucket)
    bucketed.app.delete(other)  # the bucket moves on (it no longer lists ``other``)
    new = bucketed.storage.get(bucket)
    assert old is not None and new is not None and new.version == old.version + 1
    bucketed.storage.apply([Load(old)])  # its older version, with its own valid MAC
    with pytest.raises(IntegrityError, match="older bucket"):
        bucketed.app.get(name)
    assert any("older bucket" in f for f in bucketed.verify().failures)
    bucketed.storage.apply([Delete(bucket)])
    with pytest.raises(IntegrityError, match="bucket .* missing"):
        bucketed.app.get(name)
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
