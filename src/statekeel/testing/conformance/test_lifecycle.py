"""Session lifecycle — delete, clear, pop, trim, checkpoints after trims — on every backend."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from statekeel import InvalidInputError, NotFoundError, Store


def _filled(store: Store, sid: str = "s", n: int = 5) -> Any:
    s = store.session(sid, user="u-1")
    s.append(*[{"n": i} for i in range(1, n + 1)], state={"turn": n})
    return s


def test_delete_removes_everything_of_the_session(store: Store, open_store: Any) -> None:
    s = _filled(store)
    s.checkpoint("one")
    s.notes.write("planner", {"plan": 1})
    with pytest.raises(RuntimeError):
        with s.decide("refund 991"):
            raise RuntimeError("crash")  # a closed decision in the log
    d = s.decide("refund 992")
    d.__enter__()  # an open decision: it has an entry in the decision index
    assert store.decisions(incomplete=True, session="s").items
    keep = _filled(store, "other", 2)
    assert s.delete() is True
    other = open_store()
    assert other.session_info("s") is None and other.find_session("s") is None
    assert [i.id for i in other.sessions()] == ["other"]
    assert list(other.decisions(session="s")) == [] and list(other.decisions(incomplete=True)) == []
    fresh = other.session("s")
    assert fresh.resumed is None and fresh.history() == [] and len(fresh) == 0
    assert fresh.state.get("turn") is None and fresh.checkpoints() == []
    assert not fresh.notes.read("planner").ready
    assert fresh.append("again") == 1  # a new session: numbering starts over
    assert keep.history() == [{"n": 1}, {"n": 2}] and keep.state.get("turn") == 2


def test_delete_session_by_id_and_twice(store: Store) -> None:
    _filled(store, "gone")
    assert store.delete_session("gone") is True
    assert store.delete_session("gone") is False
    assert store.delete_session("never-there") is False
    with pytest.raises(InvalidInputError):
        store.delete_session("")
    with pytest.raises(InvalidInputError):
        store.delete_session(42)  # type: ignore[arg-type]


def test_clear_drops_history_and_state_and_keeps_counting(store: Store, open_store: Any) -> None:
    s = _filled(store)
    assert s.clear() == 5
    assert s.history() == [] and len(s) == 0 and s.state.get("turn") is None
    assert s.append({"n": 6}) == 6  # no seq is ever reused
    again = open_store().session("s")
    assert again.history() == [{"n": 6}] and again.info().status == "active"


def test_clear_can_keep_the_state(store: Store) -> None:
    s = _filled(store)
    s.pop()
    assert s.clear(state=False) == 5
    assert s.history() == [] and s.state.get("turn") == 5
    s.append("next")
    assert s.history() == ["next"]  # the old view does not hide new messages
    with pytest.raises(InvalidInputError):
        s.clear(state="yes")


def test_pop_returns_the_newest_and_survives_reopen(store: Store, open_store: Any) -> None:
    s = _filled(store, n=3)
    popped = s.pop()
    assert popped is not None and popped.seq == 3 and popped.value == {"n": 3}
    assert s.history() == [{"n": 1}, {"n": 2}] and len(s) == 3  # len counts stored (hidden) entries
    assert s.history(last=1) == [{"n": 2}]
    assert [m.seq for m in s.messages(include_hidden=True)] == [1, 2, 3]
    again = open_store().session("s")
    assert again.history() == [{"n": 1}, {"n": 2}]
    assert s.append({"n": 4}) == 4 and again.history() == [{"n": 1}, {"n": 2}, {"n": 4}]
    assert [again.pop().value for _ in range(3)] == [{"n": 4}, {"n": 2}, {"n": 1}]
    assert again.pop() is None and again.history() == []


def test_concurrent_pops_never_return_the_same_message(store: Store, open_store: Any) -> None:
    s = store.session("s")
    s.append(*range(40))
    handles = [open_store().session("s") for _ in range(4)]
    got: list[int] = []
    lock = threading.Lock()

    def popper(h: Any) -> None:
        for _ in range(10):
            m = h.pop()
            if m is not None:
                with lock:
                    got.append(m.value)

    threads = [threading.Thread(target=popper, args=(h,)) for h in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(40)) and s.history() == []


def test_trim_keep_last_and_before(store: Store) -> None:
    s = _filled(store, n=10)
    assert s.trim(keep_last=4) == 6
    assert s.history() == [{"n": i} for i in range(7, 11)] and len(s) == 4
    assert s.trim(keep_last=10) == 0
    assert s.trim(before=9) == 2 and s.history() == [{"n": 9}, {"n": 10}]
    assert s.trim(before=3) == 0  # already gone
    assert s.append({"n": 11}) == 11
    assert s.trim(keep_last=0) == 3 and s.history() == [] and s.state.get("turn") == 10


def test_trim_keep_last_counts_visible_messages(store: Store) -> None:
    s = _filled(store, n=6)
    s.pop()  # seq 6 hidden
    assert s.trim(keep_last=2) == 3
    assert s.history() == [{"n": 4}, {"n": 5}]


def test_trim_bad_input_is_refused_and_changes_nothing(store: Store) -> None:
    s = _filled(store, n=3)
    for kwargs in ({}, {"keep_last": 1, "before": 2}, {"keep_last": -1}, {"before": 0},
                   {"keep_last": 1.5}, {"before": "3"}, {"keep_last": True}):
        with pytest.raises(InvalidInputError):
            s.trim(**kwargs)
    assert len(s) == 3


def test_restore_after_trim_refuses_only_trimmed_checkpoints(store: Store) -> None:
    s = _filled(store, n=4)
    old = s.checkpoint("old")  # history up to seq 4
    s.append({"n": 5}, {"n": 6}, state={"turn": 6})
    recent = s.checkpoint("recent")  # up to seq 6
    s.append({"n": 7}, state={"turn": 7})
    s.trim(before=5)
    with pytest.raises(NotFoundError, match="trimmed"):
        s.restore(old)
    assert s.state.get("turn") == 7 and s.history()[-1] == {"n": 7}  # the refusal changed nothing
    assert s.diff(old).changed == {"turn": (4, 7)}
    s.restore(recent)
    assert s.state.get("turn") == 6 and s.history() == [{"n": 5}, {"n": 6}]
    s.clear(state=False)
    with pytest.raises(NotFoundError, match="trimmed or cleared"):
        s.restore(recent)


def test_trim_under_concurrent_readers(store: Store, open_store: Any) -> None:
    s = store.session("s")
    s.append(*range(200))
    reader = open_store().session("s")
    stop = threading.Event()
    bad: list[object] = []

    def read() -> None:
        while not stop.is_set():
            h = reader.history()
            if h != list(range(200 - len(h), 200)):  # always a suffix, never a hole
                bad.append(h)

    t = threading.Thread(target=read)
    t.start()
    for keep in range(190, 0, -10):
        s.trim(keep_last=keep)
    stop.set()
    t.join()
    assert bad == [] and reader.history() == list(range(190, 200))


def test_checkpoint_labels_are_unique_even_under_races(store: Store, open_store: Any) -> None:
    store.session("s")
    handles = [open_store().session("s") for _ in range(4)]
    won: list[int] = []
    refused: list[Exception] = []

    def take(h: Any) -> None:
        try:
            won.append(h.checkpoint("release").id)
        except InvalidInputError as exc:
            refused.append(exc)

    threads = [threading.Thread(target=take, args=(h,)) for h in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == 3
    s = store.session("s")
    assert [c.label for c in s.checkpoints()] == ["release"] and s.restore("release").id == won[0]
    with pytest.raises(InvalidInputError):
        s.checkpoint("release", replace="yes")  # type: ignore[arg-type]


def test_pruning_a_labelled_checkpoint_frees_its_label(store: Store) -> None:
    s = store.session("s")
    s.state.put("v", 1)
    s.checkpoint("a")
    s.state.put("v", 2)
    s.checkpoint("b")
    assert s.prune_checkpoints(keep_last=1) == 1
    with pytest.raises(NotFoundError):
        s.restore("a")
    s.state.put("v", 3)
    assert s.checkpoint("a").id == 3 and s.restore("a").id == 3 and s.state.get("v") == 3


def test_a_fork_starts_without_checkpoints(store: Store) -> None:
    s = store.session("s")
    s.append("one")
    s.checkpoint("here")
    child = s.fork("here", into="child")
    assert child.checkpoints() == [] and child.history() == ["one"]
    assert child.checkpoint("here").id == 1  # labels are per session


def test_lifecycle_and_gc_through_a_tenant_touch_only_that_tenant(store: Store) -> None:
    from statekeel import Retention

    a, b = store.tenant("a"), store.tenant("b")
    for t in (a, b):
        t.session("s").append(*range(5))
        t.session("t").append(*range(5))
    a.set_retention(Retention(messages=1))
    assert b.retention() == Retention()
    assert a.delete_session("s") is True
    report = a.gc()
    assert report.sessions == 1 and a.session("t").history() == [4]
    assert b.session("s").history() == list(range(5)) and b.session("t").history() == list(range(5))
    assert [i.id for i in b.sessions()] == ["s", "t"]


def test_delete_under_concurrent_readers_is_all_or_nothing(store: Store, open_store: Any) -> None:
    reader = open_store()
    for round_ in range(5):
        s = store.session("s")
        s.append(*range(300))
        handle = reader.find_session("s")
        assert handle is not None
        stop = threading.Event()
        seen: list[int] = []

        def read() -> None:
            while not stop.is_set():
                seen.append(len(handle.history()))

        t = threading.Thread(target=read)
        t.start()
        time.sleep(0.02)
        s.delete()
        time.sleep(0.02)
        stop.set()
        t.join()
        assert seen and set(seen) <= {0, 300}, f"round {round_}: a reader saw part of a deleted session: {set(seen)}"
