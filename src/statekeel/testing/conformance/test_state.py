"""Scopes and versioned state, on every backend."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import statekeel
from statekeel import ConflictError, ExpiredError, InvalidInputError, NotFoundError, Store


def test_scopes_are_separate(store: Store) -> None:
    store.app.put("k", "app")
    store.user("u-1").put("k", "u1")
    store.user("u-2").put("k", "u2")
    store.scope("session:s1").put("k", "s1")
    assert store.scope("app").get("k") == "app"
    assert store.scope("user:u-1").get("k") == "u1"
    assert store.user("u-2").get("k") == "u2"
    assert store.session("s1").state.get("k") == "s1"


def test_temp_scope_is_never_written(store: Store, open_store: Any) -> None:
    store.temp.put("scratch", {"x": 1})
    assert store.temp.get("scratch") == {"x": 1}
    assert store.backend.scan("temp/") == []
    assert open_store().temp.get("scratch") is None  # another handle on the same store


@pytest.mark.parametrize("bad", ["", "users:1", "user:", "session", "app:x", "temp:1", 7])
def test_bad_scopes_are_rejected(store: Store, bad: Any) -> None:
    with pytest.raises(InvalidInputError, match="scope"):
        store.scope(bad)


@pytest.mark.parametrize("bad", ["", 3, None, b"k", ("a",)])
def test_bad_keys_are_rejected_and_nothing_written(store: Store, bad: Any) -> None:
    with pytest.raises(InvalidInputError):
        store.app.put(bad, 1)
    assert list(store.app.keys()) == []


def test_versions_and_timestamps(store: Store) -> None:
    a = store.app.put("k", 1)
    time.sleep(0.01)
    b = store.app.put("k", 2)
    assert (a.version, b.version) == (1, 2)
    assert b.created_at == a.created_at and b.updated_at > a.updated_at
    item = store.app.item("k")
    assert item is not None and item.value == 2 and item.version == 2 and item.expires_at is None


def test_compare_and_set_conflict_leaves_data(store: Store) -> None:
    store.app.put("ticket", {"id": 991}, expect=None)
    with pytest.raises(ConflictError, match="update"):
        store.app.put("ticket", {"id": 0}, expect=None)
    with pytest.raises(ConflictError):
        store.app.put("ticket", {"id": 0}, expect=5)
    assert store.app.require("ticket").value == {"id": 991}
    assert store.app.put("ticket", {"id": 992}, expect=1).version == 2


def test_update_helper(store: Store) -> None:
    store.app.put("ticket", {"id": 991})
    item = store.app.update("ticket", lambda t: {**t, "status": "open"})
    assert item.value == {"id": 991, "status": "open"} and item.version == 2
    assert store.app.update("n", lambda n: n + 1, default=0).value == 1
    with pytest.raises(NotFoundError):
        store.app.update("missing", lambda n: n)


def test_update_retries_under_thread_contention(store: Store) -> None:
    def work() -> None:
        for _ in range(50):
            store.app.update("n", lambda n: n + 1, default=0)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.app.get("n") == 200


def test_missing_and_expired_reads(store: Store) -> None:
    assert store.app.get("nope") is None and store.app.get("nope", 5) == 5
    with pytest.raises(NotFoundError, match="get"):
        store.app["nope"]
    expires = time.time() + 1.0
    store.app.put("short", 1, ttl=1.0)  # long enough to be read back on a loaded machine (0.3 s was not)
    assert store.app["short"] == 1 and "short" in store.app
    time.sleep(max(0.0, expires + 0.1 - time.time()))
    assert store.app.get("short") is None and "short" not in store.app
    with pytest.raises(NotFoundError):  # ExpiredError where the backend still knows it existed
        store.app.require("short")
    assert list(store.app.keys()) == []


def test_expired_error_is_a_not_found_error() -> None:
    assert issubclass(ExpiredError, NotFoundError) and issubclass(NotFoundError, KeyError)


def test_items_pages_and_prefix(store: Store) -> None:
    for i in range(12):
        store.user("u").put(f"k{i:02d}", i)
    store.user("u").put("other", 0)
    page = store.user("u").items("k", limit=5)
    assert [i.key for i in page] == ["k00", "k01", "k02", "k03", "k04"] and page.next == "k04"
    rest = store.user("u").items("k", after=page.next, limit=100)
    assert [i.value for i in rest] == list(range(5, 12)) and rest.next is None
    assert store.user("u").to_dict()["other"] == 0
    assert sorted(store.user("u").keys()) == sorted([f"k{i:02d}" for i in range(12)] + ["other"])


def test_delete(store: Store) -> None:
    store.app["k"] = 1
    del store.app["k"]
    assert "k" not in store.app
    with pytest.raises(NotFoundError):
        del store.app["k"]
    assert store.app.delete("k") is False


def test_adversarial_keys_round_trip(store: Store) -> None:
    weird = ["a/b", "../etc/passwd", "x\x00y", "%2F", "{s}", "'\"", "日本語", "a_b%c", " "]
    for k in weird:
        store.user("u/../x").put(k, k)
    assert sorted(store.user("u/../x").keys()) == sorted(weird)
    assert all(store.user("u/../x").get(k) == k for k in weird)
    assert list(store.user("u").keys()) == []


def test_store_reopens_with_data(store_url: str) -> None:
    with statekeel.open(store_url) as a:
        a.app.put("k", {"v": 1})
    with statekeel.open(store_url) as b:
        assert b.app.get("k") == {"v": 1}
