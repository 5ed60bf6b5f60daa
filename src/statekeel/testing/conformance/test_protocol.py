"""The backend protocol, exercised directly: every backend must behave like memory."""

from __future__ import annotations

import time

import pytest

from statekeel import ConflictError, Store
from statekeel.protocol import ANY, KEEP, Append, Delete, Expire, Op, Put, Record, Touch, Trim, keys


def put(store: Store, key: str, value: bytes = b"1", **kw: object) -> object:
    return store.storage.apply([Put(key, value, "json", **kw)])[0]  # type: ignore[arg-type]


def test_put_creates_version_1_then_increments(store: Store) -> None:
    r1 = put(store, "app/_/state/a", b"1")
    r2 = put(store, "app/_/state/a", b"2")
    assert (r1.version, r2.version) == (1, 2)  # type: ignore[attr-defined]
    got = store.storage.get("app/_/state/a")
    assert got is not None and got.data == b"2" and got.version == 2 and got.codec == "json"
    assert got.created_at == r1.created_at <= got.updated_at  # type: ignore[attr-defined]


def test_compare_and_set(store: Store) -> None:
    put(store, "k/x/a", expect=None)
    with pytest.raises(ConflictError) as info:
        put(store, "k/x/a", b"2", expect=None)
    assert info.value.actual == 1
    put(store, "k/x/a", b"2", expect=1)
    with pytest.raises(ConflictError):
        put(store, "k/x/a", b"3", expect=1)
    got = store.storage.get("k/x/a")
    assert got is not None and got.data == b"2" and got.version == 2


def test_delete_with_expect(store: Store) -> None:
    put(store, "k/x/a")
    with pytest.raises(ConflictError):
        store.storage.apply([Delete("k/x/a", expect=7)])
    assert store.storage.apply([Delete("k/x/a", expect=1)]) == [True]
    assert store.storage.get("k/x/a") is None
    assert store.storage.apply([Delete("k/x/a")]) == [False]


def test_batch_is_all_or_nothing(store: Store) -> None:
    put(store, "k/x/b")
    ops: list[Op] = [
        Put("k/x/a", b"1", "json"),
        Append("k/x/log", ((b"1", "json"),)),
        Put("k/x/b", b"2", "json", expect=None),  # fails: b exists
    ]
    with pytest.raises(ConflictError):
        store.storage.apply(ops)
    assert store.storage.get("k/x/a") is None
    assert store.storage.read("k/x/log") == []
    assert store.storage.get("k/x/b").data == b"1"  # type: ignore[union-attr]


def test_batch_sees_its_own_writes(store: Store) -> None:
    res = store.storage.apply([Put("k/x/a", b"1", "json", expect=None), Put("k/x/a", b"2", "json", expect=1)])
    assert [r.version for r in res] == [1, 2]  # type: ignore[union-attr]


def test_scan_prefix_order_and_pages(store: Store) -> None:
    names = [f"{i:03d}" for i in range(25)]
    store.storage.apply([Put(keys.join("s", "a", "state", n), b"1", "json") for n in reversed(names)])
    store.storage.apply([Put(keys.join("s", "a/b", "state", "x"), b"1", "json")])  # a/b must not leak into a
    seen: list[str] = []
    after = None
    while True:
        page = store.storage.scan("s/a/", after=after, limit=10)
        seen += [keys.split(r.key)[-1] for r in page]
        if len(page) < 10:
            break
        after = page[-1].key
    assert seen == names


def test_escaping_round_trips_adversarial_ids() -> None:
    for raw in ["a/b", "%2F", "{tag}", "..", "x\x00y", "日本", "'; drop table x; --", "50%_"]:
        key = keys.join("session", raw, "state", raw)
        assert keys.split(key) == ["session", raw, "state", raw]
        assert keys.partition(key) == "session/" + keys.escape(raw)


def test_expired_records_are_never_returned(store: Store) -> None:
    now = time.time()
    put(store, "k/x/old", expires_at=now + 0.3)
    put(store, "k/x/new", expires_at=now + 3600)
    assert store.storage.get("k/x/old") is not None
    time.sleep(0.4)
    assert store.storage.get("k/x/old") is None
    assert [r.key for r in store.storage.scan("k/x/")] == ["k/x/new"]
    assert store.storage.get_many(["k/x/old", "k/x/new"])[0] is None
    # an expired key counts as absent for compare-and-set: create-only succeeds
    assert put(store, "k/x/old", expect=None).version == 1  # type: ignore[attr-defined]


def test_purge_expired_in_batches(store: Store) -> None:
    store.storage.apply([Put(f"k/x/{i}", b"1", "json", expires_at=time.time() + 0.2) for i in range(30)])
    store.storage.apply([Append("k/x/log", ((b"1", "json"),), expires_at=time.time() + 0.2)])
    put(store, "k/x/keep")
    time.sleep(0.3)
    assert store.storage.purge_expired(limit=10) <= 10
    store.purge_expired(batch=10)
    assert store.storage.purge_expired() == 0
    assert [r.key for r in store.storage.scan("k/x/")] == ["k/x/keep"]


def test_put_keep_expiry(store: Store) -> None:
    exp = time.time() + 100
    put(store, "k/x/a", expires_at=exp)
    put(store, "k/x/a", b"2", expires_at=KEEP)
    got = store.storage.get("k/x/a")
    assert got is not None and got.expires_at == pytest.approx(exp)
    put(store, "k/x/a", b"3")  # default: no expiry
    assert store.storage.get("k/x/a").expires_at is None  # type: ignore[union-attr]


def test_logs_append_read_tail_trim(store: Store) -> None:
    b = store.storage
    first = b.apply([Append("l/x/log", tuple((str(i).encode(), "json") for i in range(1, 6)))])[0]
    assert first == 1
    assert b.apply([Append("l/x/log", ((b"6", "json"),))])[0] == 6
    assert [e.seq for e in b.read("l/x/log")] == [1, 2, 3, 4, 5, 6]
    assert [e.data for e in b.read("l/x/log", start=2, stop=4)] == [b"2", b"3"]
    assert [e.seq for e in b.read("l/x/log", limit=2, reverse=True)] == [5, 6]
    assert [e.seq for e in b.read("l/x/log", start=2, limit=2)] == [2, 3]
    info = b.log_info("l/x/log")
    assert info is not None and (info.first_seq, info.last_seq) == (1, 6)
    assert b.apply([Trim("l/x/log", 4)]) == [3]
    assert [e.seq for e in b.read("l/x/log")] == [4, 5, 6]
    assert b.apply([Append("l/x/log", ((b"7", "json"),))])[0] == 7  # trimming never reuses numbers
    info = b.log_info("l/x/log")
    assert info is not None and (info.first_seq, info.last_seq) == (4, 7)
    assert b.read("l/x/other") == [] and b.log_info("l/x/other") is None


def test_trim_everything_keeps_numbering(store: Store) -> None:
    b = store.storage
    b.apply([Append("l/x/log", ((b"1", "json"), (b"2", "json")))])
    b.apply([Trim("l/x/log", 100)])
    assert b.read("l/x/log") == []
    assert b.apply([Append("l/x/log", ((b"3", "json"),))])[0] == 3


def test_log_expiry_and_restart(store: Store) -> None:
    b = store.storage
    b.apply([Append("l/x/log", ((b"1", "json"),), expires_at=time.time() + 0.2)])
    time.sleep(0.3)
    assert b.read("l/x/log") == [] and b.log_info("l/x/log") is None
    assert b.apply([Append("l/x/log", ((b"2", "json"),))])[0] == 1  # a new log under the old name


def test_touch_and_expire(store: Store) -> None:
    b = store.storage
    put(store, "t/x/meta")
    before = b.get("t/x/meta")
    time.sleep(0.01)
    assert b.apply([Touch("t/x/meta")]) == [True]
    after = b.get("t/x/meta")
    assert before is not None and after is not None
    assert after.updated_at > before.updated_at and after.version == before.version
    assert b.apply([Touch("t/x/missing")]) == [False]
    b.apply([Append("t/x/log", ((b"1", "json"),))])
    put(store, "t/y/other")
    exp = time.time() + 0.3
    assert b.apply([Expire("t/x/", exp)]) == [2]
    assert b.get("t/y/other").expires_at is None  # type: ignore[union-attr]
    time.sleep(0.4)
    assert b.get("t/x/meta") is None and b.read("t/x/log") == []


def test_migrate_check_reports_up_to_date(store: Store) -> None:
    status = store.storage.migrate(check=True)
    assert status.up_to_date and status.pending == []


def test_unconditional_put_is_any(store: Store) -> None:
    put(store, "k/x/a", expect=ANY)
    put(store, "k/x/a", expect=ANY)
    assert store.storage.get("k/x/a").version == 2  # type: ignore[union-attr]


def test_scan_logs(store: Store) -> None:
    b = store.storage
    for name in ["e/x/a", "e/x/b", "e/x/c", "e/y/a"]:
        b.apply([Append(name, ((b"1", "json"),))])
    b.apply([Append("e/x/d", ((b"1", "json"),), expires_at=time.time() - 1)])
    assert [i.log for i in b.scan_logs("e/x/")] == ["e/x/a", "e/x/b", "e/x/c"]
    assert [i.log for i in b.scan_logs("e/x/", after="e/x/a", limit=1)] == ["e/x/b"]


def test_load_preserves_versions_timestamps_and_seqs(store: Store) -> None:
    from statekeel.protocol import Entry, Load, LoadEntries, Record

    b = store.storage
    rec = Record("k/x/a", b"1", "json", 7, 1000.0, 2000.0, None)
    assert b.apply([Load(rec)]) == [rec]
    assert b.get("k/x/a") == rec
    entries = tuple(Entry("l/x/log", seq, str(seq).encode(), "json", 1000.0 + seq) for seq in (5, 6, 7))
    assert b.apply([LoadEntries("l/x/log", entries)]) == [3]
    assert b.apply([LoadEntries("l/x/log", entries)]) == [0]  # idempotent
    assert b.read("l/x/log") == list(entries)
    info = b.log_info("l/x/log")
    assert info is not None and (info.first_seq, info.last_seq) == (5, 7)
    assert b.apply([Append("l/x/log", ((b"8", "json"),))]) == [8]


def test_rewrite_replaces_bytes_in_place(store: Store) -> None:
    from statekeel.protocol import Rewrite

    b = store.storage
    b.apply([Append("l/x/log", ((b"1", "json"), (b"2", "json")))])
    before = b.read("l/x/log")
    assert b.apply([Rewrite("l/x/log", 2, b"22", "tjson1")]) == [True]
    after = b.read("l/x/log")
    assert after[0] == before[0]
    assert (after[1].seq, after[1].data, after[1].codec, after[1].created_at) == (2, b"22", "tjson1", before[1].created_at)
    assert b.apply([Rewrite("l/x/log", 9, b"x", "json"), Rewrite("l/x/none", 1, b"x", "json")]) == [False, False]


def test_load_entries_skips_repeated_and_out_of_order_seqs(store: Store) -> None:
    from statekeel.protocol import Entry, LoadEntries

    e = [Entry("l/x/log", s, str(s).encode(), "json", 1000.0 + s) for s in (1, 2, 2, 1, 3)]
    assert store.storage.apply([LoadEntries("l/x/log", tuple(e))]) == [3]
    assert [x.seq for x in store.storage.read("l/x/log")] == [1, 2, 3]


def test_batch_checks_each_op_after_the_ones_before_it(store: Store) -> None:
    from statekeel.protocol import Load, Record

    b = store.storage
    # a Load earlier in the batch sets the version a later compare-and-set sees
    b.apply([Load(Record("k/x/a", b"1", "json", 7, 1.0, 1.0, None)), Put("k/x/a", b"2", "json", expect=7)])
    assert b.get("k/x/a").version == 8  # type: ignore[union-attr]
    # an Expire to the past earlier in the batch makes the key absent for create-only
    put(store, "k/x/b")
    b.apply([Expire("k/x/", time.time() - 1), Put("k/x/b", b"3", "json", expect=None)])
    got = b.get("k/x/b")
    assert got is not None and got.version == 1 and got.data == b"3"


def test_read_values_matches_read(store: Store) -> None:
    b = store.storage
    b.apply([Append("l/x/log", tuple((str(i).encode(), "json") for i in range(1, 8)))])
    b.apply([Trim("l/x/log", 3)])
    assert b.read_values("l/x/log") == [(e.data, e.codec) for e in b.read("l/x/log")]
    assert b.read_values("l/x/log", limit=2, reverse=True) == [(b"6", "json"), (b"7", "json")]
    assert b.read_values("l/x/none") == []


def test_append_at_is_a_precondition(store: Store) -> None:
    b = store.storage
    log = "l/x/at"
    assert b.apply([Append(log, ((b"1", "json"),), at=1)]) == [1]  # a new log starts at 1
    with pytest.raises(ConflictError) as err:
        b.apply([Put("l/x/side", b"1", "json"), Append(log, ((b"2", "json"),), at=1)])
    assert err.value.key == log
    assert b.get("l/x/side") is None and [e.seq for e in b.read(log)] == [1]  # nothing was written
    # two appends to one log in one batch: the second is judged after the first
    assert b.apply([Append(log, ((b"2", "json"), (b"3", "json")), at=2), Append(log, ((b"4", "json"),), at=4)]) == [2, 4]
    with pytest.raises(ConflictError):
        b.apply([Append(log, ((b"5", "json"),)), Append(log, ((b"6", "json"),), at=5)])
    assert [e.data for e in b.read(log)] == [b"1", b"2", b"3", b"4"]
    b.apply([Trim(log, 100)])  # trimming keeps the numbering, so the next seq is still 5
    assert b.apply([Append(log, ((b"5", "json"),), at=5)]) == [5]
    b.apply([Expire("l/x/", time.time() - 1)])  # an expired log starts again at 1
    assert b.apply([Append(log, ((b"1", "json"),), at=1)]) == [1]


def test_append_at_conflict_names_the_last_seq(store: Store) -> None:
    b = store.storage
    b.apply([Append("l/x/n", ((b"1", "json"), (b"2", "json")))])
    b.apply([Trim("l/x/n", 100)])  # an emptied log still numbers on
    with pytest.raises(ConflictError) as err:
        b.apply([Append("l/x/n", ((b"3", "json"),), at=1)])
    assert (err.value.key, err.value.expected, err.value.actual) == ("l/x/n", 0, 2)


def test_apply_takes_the_batch_clock(store: Store) -> None:
    b = store.storage
    t = time.time() - 0.123456789
    rec, first = b.apply([Put("c/x/k", b"1", "json"), Append("c/x/log", ((b"1", "json"),))], now=t)
    assert isinstance(rec, Record) and (rec.created_at, rec.updated_at) == (t, t) and first == 1
    stored = b.get("c/x/k")
    assert stored is not None and (stored.created_at, stored.updated_at) == (t, t)
    entry = b.read("c/x/log")[0]
    assert entry.created_at == t
    later = t + 1.5
    b.apply([Put("c/x/k", b"2", "json")], now=later)
    stored = b.get("c/x/k")
    assert stored is not None and (stored.created_at, stored.updated_at) == (t, later)


def test_get_many_and_values_matches_get_many_and_read_values(store: Store) -> None:
    """The records and a log's tail read together answer as the two reads do, keys in the log's
    partition or not — the protocol's default, and a native asyncio backend's own (Redis': one
    round trip)."""
    import asyncio

    from statekeel.aio import _native

    b = store.storage
    b.apply([Append("g/x/log", tuple((str(i).encode(), "json") for i in range(1, 8))), Trim("g/x/log", 3)])
    put(store, "g/x/a", b"10")
    put(store, "g/x/gone", b"11", expires_at=time.time() + 0.2)
    put(store, "h/y/other", b"12")
    time.sleep(0.3)
    keys_ = ["g/x/a", "g/x/missing", "g/x/gone", "h/y/other"]
    cases = [("g/x/log", 2, True), ("g/x/log", None, False), ("g/x/log", 0, True), ("g/x/none", 3, True)]
    expected = [(b.get_many(keys_), b.read_values(log, limit=n, reverse=r)) for log, n, r in cases]
    assert expected[0][1] == [(b"6", "json"), (b"7", "json")] and [r is None for r in expected[0][0]] == [
        False, True, True, False]  # fmt: skip
    for ks in (keys_, keys_[:3], []):
        assert [b.get_many_and_values(ks, log, limit=n, reverse=r) for log, n, r in cases] == [
            (b.get_many(ks), v) for _, v in expected]  # fmt: skip
    native = _native.native_backend(store)
    if native is not None:

        async def both() -> list[object]:
            try:
                return [await native.get_many_and_values(keys_, log, limit=n, reverse=r) for log, n, r in cases]
            finally:
                await native.aclose()

        assert asyncio.run(both()) == expected
