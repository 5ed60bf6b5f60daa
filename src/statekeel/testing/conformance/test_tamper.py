"""Tamper-evident mode (``integrity="chain"``) finds every kind of edit made beneath the API — on every backend.

Each test edits storage directly (``store.storage``, the backend beneath the
chain and the encryption), as someone with write access to the database but not
the key would: change an entry, delete entries in the middle or at the tail,
reorder them, forge an append, copy a record from another session, user or
tenant, restore an older version, change a timestamp, roll the whole store
back. Reads raise :class:`~statekeel.errors.IntegrityError` naming the place,
and ``store.verify()`` lists it.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

import statekeel
from statekeel import Encryption, Integrity
from statekeel.backends import open_backend
from statekeel.core import layout
from statekeel.core.chain_plan import FORGET_AFTER
from statekeel.core.chained import ChainedBackend
from statekeel.errors import IntegrityError
from statekeel.protocol import (ANY, KEEP, Append, Delete, Entry, Expire, Load, LoadEntries, Put, Record, Rewrite, Touch,
                                Trim, keys)

KEY = base64.b64encode(b"M" * 32).decode()


CHAINED = ("chain", "chain+encryption")
"""The modes every tamper test runs in."""


def open_chained(url: str, mode: str) -> statekeel.Store:
    """A tamper-evident store at ``url``, encrypted too when ``mode`` says so."""
    encryption = Encryption(master_key=KEY) if "encryption" in mode else None
    return statekeel.open(url, integrity=Integrity(key=KEY), encryption=encryption)


@pytest.fixture(params=CHAINED)
def chained(request: pytest.FixtureRequest, store_url: str) -> Iterator[statekeel.Store]:
    with open_chained(store_url, request.param) as store:
        yield store


def _chat(store: statekeel.Store, sid: str = "s", n: int = 4) -> statekeel.Session:
    s = store.session(sid, user="ann")
    for i in range(n):
        s.append({"role": "user", "content": f"m{i}"}, state={"turn": i})
    return s


def _refused(s: statekeel.Session, last: int, match: str | None = None) -> None:
    """Both reads of a history refuse it: the whole history, and its newest ``last`` messages (read with
    the session's records in one call beneath the features: a window checked against the same head)."""
    reads: tuple[Callable[[], object], ...] = (s.history, lambda: s.history(last=last))
    for read in reads:
        with pytest.raises(IntegrityError, match=match):
            read()


def _rebuild(store: statekeel.Store, log: str, entries: list[Entry]) -> None:
    """Replace a log by ``entries`` beneath the API (what deleting rows directly amounts to)."""
    store.storage.apply([Expire(log, time.time() - 1)])
    store.storage.purge_expired()
    store.storage.apply([LoadEntries(log, tuple(entries))])


def test_an_edited_entry_is_refused(chained: statekeel.Store) -> None:
    s = _chat(chained)
    e = chained.storage.read(s._log)[1]
    damaged = bytearray(e.data)
    damaged[0] ^= 0x01  # a bit of the value (or ciphertext); the trailer is untouched
    chained.storage.apply([Rewrite(e.log, e.seq, bytes(damaged), e.codec)])
    _refused(s, last=3)  # seqs 2..4: the edited one is in the window
    assert any(f"{e.seq}" in f or "entry" in f for f in chained.verify().failures)


def test_entries_deleted_in_the_middle_or_at_the_tail_are_found(chained: statekeel.Store) -> None:
    s = _chat(chained)
    entries = chained.storage.read(s._log)
    _rebuild(chained, s._log, [entries[0], *entries[2:]])
    _refused(s, last=3, match="missing")
    s2 = _chat(chained, "t")
    tail = chained.storage.read(s2._log)
    _rebuild(chained, s2._log, tail[:-1])
    _refused(s2, last=2, match="tail|ends at seq|missing")
    with pytest.raises(IntegrityError):
        len(s2)  # the count comes from the log's bounds: checked against the head too
    assert len(chained.verify().failures) >= 2


def test_reordered_entries_are_refused(chained: statekeel.Store) -> None:
    s = _chat(chained)
    a, b = chained.storage.read(s._log)[1:3]
    chained.storage.apply([Rewrite(s._log, a.seq, b.data, b.codec), Rewrite(s._log, b.seq, a.data, a.codec)])
    _refused(s, last=3)


def test_a_forged_append_is_refused(chained: statekeel.Store) -> None:
    s = _chat(chained)
    last = chained.storage.read(s._log)[-1]
    chained.storage.apply([Append(s._log, ((last.data, last.codec),))])  # a copy of a genuine entry, one seq on
    _refused(s, last=2)
    assert not chained.verify().ok


def test_records_copied_across_sessions_users_and_tenants_are_refused(chained: statekeel.Store) -> None:
    _chat(chained, "a")
    b = _chat(chained, "b")
    rec_a = chained.storage.get(chained.session("a").state._full_key("turn"))
    rec_b = chained.storage.get(b.state._full_key("turn"))
    assert rec_a is not None and rec_b is not None
    chained.storage.apply([Load(replace(rec_a, key=rec_b.key, version=rec_b.version))])
    with pytest.raises(IntegrityError):  # its MAC (and, encrypted, its ciphertext) binds it to a's key
        b.state.get("turn")
    chained.user("ann").put("plan", "basic")
    chained.user("bob").put("plan", "pro")
    ann = chained.storage.get(chained.user("ann")._full_key("plan"))
    bob = chained.storage.get(chained.user("bob")._full_key("plan"))
    assert ann is not None and bob is not None
    chained.storage.apply([Load(replace(bob, key=ann.key, version=ann.version))])
    with pytest.raises(IntegrityError):
        chained.user("ann").get("plan")
    x, y = chained.tenant("x"), chained.tenant("y")
    x.app.put("limit", 10)
    y.app.put("limit", 99)
    rx = chained.storage.get("x~" + x.app._full_key("limit"))
    ry = chained.storage.get("y~" + y.app._full_key("limit"))
    assert rx is not None and ry is not None
    chained.storage.apply([Load(replace(ry, key=rx.key, version=rx.version))])
    with pytest.raises(IntegrityError):
        x.app.get("limit")
    assert y.app.get("limit") == 99


def test_an_older_version_restored_whole_is_refused(chained: statekeel.Store) -> None:
    chained.app.put("limit", 100)
    old = chained.storage.get(chained.app._full_key("limit"))
    chained.app.put("limit", 5)
    assert old is not None
    chained.storage.apply([Load(old)])  # version 1, its own valid MAC, as a backup had it
    with pytest.raises(IntegrityError, match="older version"):
        chained.app.get("limit")


def test_an_expired_record_brought_back_by_its_expiry_is_refused(chained: statekeel.Store) -> None:
    chained.app.put("keep", 1)  # the partition's head outlives the record
    chained.app.put("promo", "50% off", ttl=0.2)
    rec = chained.storage.get(chained.app._full_key("promo"))
    assert rec is not None
    time.sleep(0.3)
    assert chained.app.get("promo") is None
    chained.storage.apply([Load(replace(rec, expires_at=time.time() + 3600))])  # the same bytes, a later expiry
    with pytest.raises(IntegrityError, match="expir"):
        chained.app.get("promo")
    assert not chained.verify().ok


def test_a_record_put_again_after_it_expired_is_not_tampering(chained: statekeel.Store) -> None:
    """A put that keeps the expiry (no ``ttl=``) of a record that has expired starts a new record with
    none, on every backend — and its chain head says so too."""
    chained.app.put("keep", 1)
    key = chained.app._full_key("promo")
    chained.backend.apply([Put(key, b'"a"', "json", ANY, time.time() + 0.2)])
    time.sleep(0.3)
    chained.backend.apply([Put(key, b'"b"', "json", ANY, KEEP)])  # nothing live to keep an expiry of
    assert chained.app.get("promo") == "b"
    assert chained.verify().ok, chained.verify().failures


def test_a_touch_of_what_has_expired_is_not_tampering(chained: statekeel.Store) -> None:
    """A touch does not bring an expired record or log back (the backend reports it untouched); the chain
    head must not list it as live either, or every later read would call it deleted."""
    chained.app.put("keep", 1)
    key, log = chained.app._full_key("promo"), "app/_/journal"
    soon = time.time() + 0.2
    chained.backend.apply([Put(key, b'"x"', "json", ANY, soon), Append(log, ((b'"e"', "json"),), soon)])
    time.sleep(0.3)
    assert chained.backend.apply([Touch(key, time.time() + 100), Touch(log, time.time() + 100)]) == [False, False]
    assert chained.app.get("promo") is None and chained.backend.read(log) == []
    assert chained.verify().ok, chained.verify().failures


def test_records_expired_long_ago_leave_their_chain_head(chained: statekeel.Store) -> None:
    """A partition's head is written whole with every batch: once it has grown by a few dozen members,
    what expired more than ``FORGET_AFTER`` before the batch is dropped from it (a read leaves it out
    anyway), so the head does not grow with every record that ever expired in the partition —
    idempotency keys, say."""
    keep = chained.app._full_key("keep")
    part = keys.partition(keep)
    chained.backend.apply([Put(chained.app._full_key(f"k{i}"), b"1", "json", ANY, time.time() + 0.2) for i in range(40)])
    chained.app.put("keep", 1)

    def listed() -> set[str]:
        backend = chained.backend
        assert isinstance(backend, ChainedBackend)
        return set(backend.listed(part).records)

    assert len(listed()) >= 41
    time.sleep(0.3)
    chained.app.put("keep", 2)  # an hour has not passed: still listed (a clock behind the writer's sees them expired)
    backend = chained.backend
    assert isinstance(backend, ChainedBackend)
    root = backend.head_of(backend.storage.get(layout.chain_head_key(part)), part)
    assert root.total() >= 41  # listed by the root itself, or by buckets it still lists (expired with them)
    assert chained.app.get("k0") is None and chained.app.get("k39") is None
    later = time.time() + FORGET_AFTER + 1  # as if an hour had passed: 40 more records, and the head is swept
    chained.backend.apply([Put(chained.app._full_key(f"m{i}"), b"2", "json", ANY, None) for i in range(40)], now=later)
    chained.backend.apply([Put(keep, b"3", "json", ANY, None)], now=later)
    names = listed()
    assert not any(name.endswith(f"/k{i}") for name in names for i in range(40))
    assert all(any(name.endswith(f"/m{i}") for name in names) for i in range(40))
    assert chained.app.get("k0") is None and chained.app.get("keep") == 3 and chained.app.get("m39") == 2
    assert chained.verify().ok, chained.verify().failures


def test_a_deleted_record_is_found(chained: statekeel.Store) -> None:
    chained.app.put("limit", 100)
    chained.storage.apply([Delete(chained.app._full_key("limit"))])
    with pytest.raises(IntegrityError, match="missing"):
        chained.app.get("limit")


def test_changed_timestamps_are_refused(chained: statekeel.Store) -> None:
    chained.app.put("limit", 100)
    rec = chained.storage.get(chained.app._full_key("limit"))
    assert isinstance(rec, Record)
    chained.storage.apply([Load(replace(rec, created_at=rec.created_at - 3600))])
    with pytest.raises(IntegrityError):
        chained.app.get("limit")
    s = _chat(chained)
    entries = chained.storage.read(s._log)
    _rebuild(chained, s._log, [*entries[:-1], replace(entries[-1], created_at=entries[-1].created_at - 60)])
    _refused(s, last=1, match="timestamp|chain")


def test_trims_and_expiry_through_the_api_are_not_tampering(chained: statekeel.Store) -> None:
    s = _chat(chained, n=6)
    chained.backend.apply([Trim(s._log, 3)])
    assert [m["content"] for m in s.history()] == ["m2", "m3", "m4", "m5"]
    assert [m["content"] for m in s.history(last=2)] == ["m4", "m5"]
    assert [m["content"] for m in s.history(last=9)] == ["m2", "m3", "m4", "m5"]
    chained.app.put("short", 1, ttl=0.2)
    time.sleep(0.3)
    assert chained.app.get("short") is None
    chained.purge_expired()
    assert chained.verify().ok, chained.verify().failures


def test_a_rollback_of_the_whole_store_is_found_with_an_anchor(store_url: str, tmp_path: Path) -> None:
    anchor = f"sqlite:///{tmp_path / 'keystore.db'}"  # a separate store, as the keystore would be
    with statekeel.open(store_url, integrity=Integrity(key=KEY, anchor=anchor)) as store:
        s = _chat(store)
        snapshot = store.storage.scan("", limit=10_000), {i.log: store.storage.read(i.log)
                                                          for i in store.storage.scan_logs("", limit=100)}
        s.append({"role": "user", "content": "refund approved"}, state={"refund": True})
        report = store.anchor()
        assert report.ok and "anchored" in report.anchor
    raw = open_backend(store_url)  # roll everything back to the snapshot, beneath the API
    try:
        raw.apply([Delete(r.key) for r in raw.scan("", limit=10_000)])
        for info in raw.scan_logs("", limit=100):
            raw.apply([Expire(info.log, time.time() - 1)])
        raw.purge_expired()
        records, logs = snapshot
        raw.apply([Load(r) for r in records])
        for log, entries in logs.items():
            raw.apply([LoadEntries(log, tuple(entries))])
    finally:
        raw.close()
    with statekeel.open(store_url, integrity=Integrity(key=KEY, anchor=anchor)) as store:
        with pytest.raises(IntegrityError, match="rolled back"):
            store.session("s").history()
        assert any("rolled back" in f for f in store.verify().failures)
    with statekeel.open(store_url, integrity=Integrity(key=KEY)) as unanchored:
        assert unanchored.session("s").history()[-1]["content"] == "m3"  # consistent with itself: only the anchor knows


def test_reencrypting_a_chained_store_keeps_its_chains(store_url: str) -> None:
    from statekeel.features.rotation import reencrypt

    with statekeel.open(store_url, integrity=Integrity(key=KEY), encryption=Encryption(master_key=KEY)) as store:
        s = _chat(store)
        store.events("audit").append("refund", {"amount": 10})
        result = reencrypt(store)
        assert result.entries >= 5 and result.records >= 2
        assert [m["content"] for m in s.history()] == ["m0", "m1", "m2", "m3"]
        report = store.verify()
        assert report.ok and report.entries >= 5, report.failures
