"""Retention caps and gc — on every backend."""

from __future__ import annotations

import time

import pytest

from statekeel import InvalidInputError, Retention, Store


def test_session_caps_are_kept_and_applied(store: Store) -> None:
    s = store.session("s", retention=Retention(messages=3, checkpoints=1))
    s.append(*range(10))
    s.checkpoint("a")
    s.checkpoint("b")
    assert len(s) == 10  # caps are not applied on the write path
    assert s.apply_retention() == (7, 1)
    assert s.history() == [7, 8, 9] and [c.label for c in s.checkpoints()] == ["b"]
    assert s.apply_retention() == (0, 0)


def test_byte_cap_keeps_the_newest_messages_within_budget(store: Store) -> None:
    s = store.session("s")
    s.append(*("x" * 100 for _ in range(10)))
    s.set_retention(Retention(bytes=350))
    dropped, _ = s.apply_retention()
    kept = s.history()
    assert dropped == 10 - len(kept) and 1 <= len(kept) <= 3
    entries = store.backend.read("session/s/history")
    assert sum(len(e.data) for e in entries) <= 350


def test_store_defaults_apply_to_every_session_and_session_caps_win(store: Store) -> None:
    store.set_retention(Retention(messages=2))
    assert store.retention() == Retention(messages=2)
    a = store.session("a")
    a.append(*range(5))
    b = store.session("b", retention=Retention(messages=4))
    b.append(*range(5))
    report = store.gc()
    assert (report.sessions, report.messages_dropped) == (2, 4)
    assert a.history() == [3, 4] and b.history() == [1, 2, 3, 4]
    store.set_retention(None)
    assert store.retention() == Retention()


def test_gc_purges_deleted_sessions_and_does_not_count_as_activity(store: Store, backend_name: str) -> None:
    store.set_retention(Retention(messages=1))
    gone = store.session("gone")
    gone.append(*range(50))
    gone.delete()
    quiet = store.session("quiet")
    quiet.append(*range(5))
    time.sleep(0.3)
    assert store.backend.get("session/gone/meta", include_expired=True) is not None or backend_name == "redis"
    store.gc()
    assert store.session_info("gone") is None
    assert store.backend.get("session/gone/meta", include_expired=True) is None  # the bytes are gone
    assert quiet.history() == [4]
    assert [i.id for i in store.sessions(stale_after="0.2s")] == ["quiet"]  # gc did not heartbeat it


def test_gc_keeps_a_ttl_sessions_expiry(store: Store) -> None:
    s = store.session("s", ttl="1h", retention=Retention(messages=1))
    s.append(*range(3))
    before = s.info().expires_at
    store.gc()
    assert s.info().expires_at == before and s.history() == [2]


def test_bad_retention_is_refused_and_changes_nothing(store: Store) -> None:
    for bad in ({"messages": -1}, {"bytes": 0}, {"checkpoints": 1.5}, {"messages": True}, {"bytes": "1k"}):
        with pytest.raises(InvalidInputError):
            Retention(**bad)
    with pytest.raises(InvalidInputError):
        store.session("s", retention={"messages": 1})  # type: ignore[arg-type]
    assert store.session_info("s") is None
    with pytest.raises(InvalidInputError):
        store.set_retention(3)  # type: ignore[arg-type]
    assert store.retention() == Retention()


def test_session_caps_survive_a_crash_recovery_reopen(store: Store) -> None:
    s = store.session("s", retention=Retention(messages=1))
    s.append(*range(3))
    s.mark_crashed()
    again = store.session("s", ttl="1h")  # a recovery that also changes the TTL rewrites the record
    assert again.info().status == "active" and again.apply_retention() == (2, 0)
