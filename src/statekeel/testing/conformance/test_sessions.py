"""Sessions: history, batches, status, heartbeat, TTL, listings — on every backend."""

from __future__ import annotations

import time

import pytest

from statekeel import ExpiredError, InvalidInputError, SerializationError, Store


def test_append_and_history(store: Store) -> None:
    s = store.session("support-42", user="u-7")
    assert s.append({"role": "user", "content": "My order is late"}) == 1
    assert s.append({"role": "assistant", "content": "Sorry!"}, {"role": "user", "content": "ok"}) == 2
    assert [m["content"] for m in s.history()] == ["My order is late", "Sorry!", "ok"]
    assert s.history(last=2)[0]["content"] == "Sorry!"
    assert s.history(last=0) == [] and len(s) == 3
    msgs = s.messages(last=1)
    assert msgs[0].seq == 3 and msgs[0].created_at.tzinfo is not None
    assert [m.seq for m in s.messages(start=2, stop=3)] == [2]


def test_history_last_reads_only_the_tail(store: Store) -> None:
    s = store.session("big")
    for chunk in range(10):
        s.append(*[{"i": chunk * 100 + i} for i in range(100)])
    assert [m["i"] for m in s.history(last=3)] == [997, 998, 999]
    assert len(s) == 1000


def test_append_with_state_is_one_commit(store: Store) -> None:
    s = store.session("t")
    s.append({"role": "user", "content": "hi"}, state={"turn": 1, "mood": "ok"})
    assert s.state.get("turn") == 1 and s.state.get("mood") == "ok"
    with pytest.raises(SerializationError):
        s.append({"role": "user"}, state={"bad": object()})
    assert len(s) == 1 and s.state.get("bad") is None  # nothing of the failed call was written


def test_batch_commits_together_or_not_at_all(store: Store) -> None:
    s = store.session("t")
    with s.batch() as b:
        b.append({"n": 1})
        b.append({"n": 2})
        b.put("step", "two")
    assert b.first_seq == 1 and len(s) == 2 and s.state.get("step") == "two"
    with pytest.raises(RuntimeError):
        with s.batch() as b:
            b.append({"n": 3})
            raise RuntimeError("agent crashed mid-turn")
    assert len(s) == 2


def test_reopen_returns_the_same_session(store: Store) -> None:
    s = store.session("x", user="u")
    s.append("hello")
    again = store.session("x")
    assert again.history() == ["hello"] and again.user == "u"
    assert again.resumed is not None and again.resumed.status == "active"
    with pytest.raises(InvalidInputError, match="belongs to user"):
        store.session("x", user="someone-else")


def test_status_and_recovery(store: Store) -> None:
    s = store.session("job")
    assert s.info().status == "active"
    assert s.mark_crashed().status == "crashed"
    assert [i.id for i in store.sessions(status="crashed")] == ["job"]
    resumed = store.session("job")  # reopening a crashed session resumes it
    assert resumed.resumed is not None and resumed.resumed.status == "crashed"
    assert resumed.info().status == "active"
    assert resumed.complete().status == "completed"
    with pytest.raises(InvalidInputError):
        resumed.set_status("bogus")  # type: ignore[arg-type]


def test_heartbeat_and_stale_detection(store: Store) -> None:
    s = store.session("agent")
    before = s.info().updated_at
    time.sleep(1.2)  # the threshold, 1 s, leaves a loaded machine (moto, 4 test workers: 0.4 s was not) time
    assert s.is_stale(1.0)  # between a write and its check
    assert [i.id for i in store.sessions(stale_after=1.0)] == ["agent"]
    s.heartbeat()
    assert s.info().updated_at > before and not s.is_stale(1.0)
    time.sleep(1.2)
    s.append("an append counts as activity too")
    assert not s.is_stale(1.0)
    time.sleep(1.2)
    assert [i.id for i in store.mark_stale_crashed(1.0)] == ["agent"]
    assert s.info().status == "crashed"


def test_list_sessions_filters_and_pages(store: Store) -> None:
    for i in range(7):
        store.session(f"s{i}", user="alice" if i % 2 else "bob")
    store.session("s3").complete()
    ids = []
    after = None
    while True:
        page = store.sessions(limit=3, after=after)
        ids += [p.id for p in page]
        if page.next is None:
            break
        after = page.next
    assert ids == [f"s{i}" for i in range(7)]
    assert [p.id for p in store.sessions(user="alice")] == ["s1", "s3", "s5"]
    assert [p.id for p in store.sessions(user="alice", status="active")] == ["s1", "s5"]
    with pytest.raises(InvalidInputError):
        store.sessions(status="zombie")  # type: ignore[arg-type]


def test_session_ttl_expires_everything(store: Store) -> None:
    # ttl 1.5 s (the record expires 1.65 s after its last write): with 0.5 s, a loaded CI machine took
    # longer than that from opening the session to its first append on chained PostgreSQL
    s = store.session("brief", ttl=1.5)
    s.append("hi", state={"k": 1})
    info = s.info()
    assert info.ttl == 1.5 and info.expires_at is not None
    time.sleep(1.8)
    assert s.history() == [] and s.state.get("k") is None
    assert [i.id for i in store.sessions()] == []
    with pytest.raises(ExpiredError):
        s.append("too late")
    fresh = store.session("brief")
    assert fresh.resumed is None and fresh.history() == []


def test_session_activity_renews_ttl(store: Store) -> None:
    # 1.8 s of activity, longer than the ttl; each gap (0.3 s plus one write) stays well under
    # it even on a loaded machine, where a chained, fsynced write can take half a second.
    s = store.session("busy", ttl=1.5)
    s.state.put("k", 1)
    for i in range(6):
        time.sleep(0.3)
        s.append(i)
    assert s.state.get("k") == 1 and len(s) == 6


def test_session_ids_are_validated(store: Store) -> None:
    with pytest.raises(InvalidInputError):
        store.session("")
    with pytest.raises(InvalidInputError):
        store.session(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        store.session("a").append()


def test_sessions_with_separator_characters_stay_apart(store: Store) -> None:
    store.session("a").append("in a")
    store.session("a/b").append("in a/b")
    assert store.session("a").history() == ["in a"]
    assert sorted(i.id for i in store.sessions()) == ["a", "a/b"]


def test_session_info_never_creates_or_reopens(store: Store) -> None:
    assert store.session_info("ghost") is None
    assert list(store.sessions()) == []
    store.session("job").mark_crashed()
    info = store.session_info("job")
    assert info is not None and info.status == "crashed"
    assert store.session_info("job").status == "crashed"  # type: ignore[union-attr]


def test_stale_filter_with_other_status_is_refused(store: Store) -> None:
    with pytest.raises(InvalidInputError, match="stale_after"):
        store.sessions(status="crashed", stale_after=1)


def test_a_session_whose_creation_was_cut_short_is_found_by_doctor_and_relisted_on_reopen(store: Store) -> None:
    """Issue 10 D2: older versions wrote a session's metadata and its index entry in two
    batches; a crash in between left a session that listings never showed. The metadata
    record alone is what such a crash leaves behind."""
    from statekeel.cli.health import examine
    from statekeel.core import layout
    from statekeel.protocol import Put

    store.session("listed").append("hi")
    key = layout.session_meta_key("orphan")
    data, codec = store.codec.encode({"user": None, "status": "completed", "ttl": None}, "meta", key)
    store.backend.apply([Put(key, data, codec, None)])
    assert [i.id for i in store.sessions()] == ["listed"]
    sessions = next(c for c in examine(store).checks if c.name == "sessions")
    assert any("'orphan' exists but is not listed" in p for p in sessions.problems)

    s = store.session("orphan")  # reopening repairs the listing and keeps the status
    assert s.info().status == "completed"
    assert [i.id for i in store.sessions()] == ["listed", "orphan"]
    report = examine(store)
    assert report.ok, [(c.name, c.problems) for c in report.checks if c.problems]
