"""Idempotent retries: a keyed append or batch is applied at most once — on every backend."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from statekeel import ConflictError, InvalidInputError, Store, UnavailableError
from statekeel.errors import maybe_applied


def test_keyed_append_is_applied_once_and_returns_the_original_seq(store: Store, open_store: Any) -> None:
    s = store.session("s")
    s.append("before")
    assert s.append({"n": 1}, {"n": 2}, idempotency_key="turn-1") == 2
    s.append("after")
    assert s.append({"n": 1}, {"n": 2}, idempotency_key="turn-1") == 2  # the retry: nothing written
    again = open_store().session("s")
    assert again.append({"n": 1}, {"n": 2}, idempotency_key="turn-1") == 2  # another process, too
    assert again.history() == ["before", {"n": 1}, {"n": 2}, "after"]
    assert s.append("x", idempotency_key="turn-2") == 5 and len(s) == 5


def test_keyed_append_with_state_and_state_only(store: Store) -> None:
    s = store.session("s")
    s.append("m", state={"turn": 1}, idempotency_key="a")
    s.state.put("turn", 5)
    s.append("m", state={"turn": 1}, idempotency_key="a")
    assert s.history() == ["m"] and s.state.get("turn") == 5  # the retry did not write state either
    assert s.append(state={"k": 1}, idempotency_key="b") == 0
    assert s.append(state={"k": 2}, idempotency_key="b") == 0 and s.state.get("k") == 1


def test_keyed_batch_is_applied_once(store: Store) -> None:
    s = store.session("s")
    for _ in range(3):
        with s.batch(idempotency_key="turn-9") as b:
            b.append("q")
            b.append("a")
            b.put("turn", 9)
        assert b.first_seq == 1
    assert s.history() == ["q", "a"] and s.state.get("turn") == 9


def test_keys_are_per_session(store: Store) -> None:
    store.session("a").append("x", idempotency_key="k")
    assert store.session("b").append("x", idempotency_key="k") == 1
    assert store.session("b").history() == ["x"]


def test_a_failed_compare_and_set_is_not_taken_for_a_replay(store: Store) -> None:
    s = store.session("s")
    s.state.put("ticket", 1)
    with pytest.raises(ConflictError):
        with s.batch(idempotency_key="k") as b:
            b.append("m")
            b.put("ticket", 2, expect=None)
    assert s.history() == [] and s.append("m", idempotency_key="k") == 1  # the key was not used up


def test_concurrent_retries_store_the_message_once(store: Store, open_store: Any) -> None:
    store.session("s")
    handles = [open_store().session("s") for _ in range(4)]
    seqs: list[int] = []

    def retry(h: Any) -> None:
        for _ in range(5):
            seqs.append(h.append({"turn": 1}, idempotency_key="t1"))

    threads = [threading.Thread(target=retry, args=(h,)) for h in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.session("s").history() == [{"turn": 1}] and set(seqs) == {1}


def test_bad_idempotency_keys_are_refused_and_write_nothing(store: Store) -> None:
    s = store.session("s")
    for bad in ("", 42, b"k", "x" * 2000):
        with pytest.raises(InvalidInputError):
            s.append("m", idempotency_key=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            s.batch(idempotency_key=bad)  # type: ignore[arg-type]
    assert s.history() == []


def test_unavailable_error_says_to_retry_with_the_same_key() -> None:
    assert "same key" in str(maybe_applied(UnavailableError("the connection broke")))
    assert "same key" not in str(UnavailableError("the server is loading"))
