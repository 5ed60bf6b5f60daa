"""Reloading an encrypted history in bulk (issue 15 item 3: "decrypting in batches when encrypted").

``SealedBackend.read_values`` reads the values as stored (the backend's fast path: no Entry
objects) and opens them all at once (``Cipher.open_run``) at the first seq this handle knows —
1 for a whole history, or from its last append for the newest N. A wrong guess (a trimmed log,
another writer's appends), damage, a planted value or a mix of key versions fails that bulk open,
and the handle asks for the log's bounds, then goes entry by entry, naming what it refuses.
These tests count which of those reads ran, on every backend, sync and asyncio.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from test_aio_native import _is_native

import statekeel
from statekeel import Encryption, IntegrityError
from statekeel.core import layout
from statekeel.core.sealed import SealedBackend
from statekeel.core.sealed_aio import AsyncSealedBackend
from statekeel.protocol import Rewrite

KEY = base64.b64encode(b"R" * 32).decode()
LOG = layout.history_log("s1")


def _msgs(n: int, start: int = 0) -> list[dict[str, str]]:
    return [{"role": "user" if i % 2 else "assistant", "content": f"message {i} — ü"} for i in range(start, start + n)]


def _spy(backend: Any, calls: list[str], *names: str) -> None:
    """Count calls of ``names`` on ``backend`` (the store beneath the sealing), by name."""
    for name in names:
        method = getattr(backend, name)

        def counted(*args: Any, _method: Callable[..., Any] = method, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _method(*args, **kwargs)

        setattr(backend, name, counted)


@pytest.fixture
def open_enc(store_url: str) -> Iterator[Callable[[], statekeel.Store]]:
    opened: list[statekeel.Store] = []

    def make() -> statekeel.Store:
        opened.append(statekeel.open(store_url, encryption=Encryption(master_key=KEY)))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


def _sealed(store: statekeel.Store, calls: list[str]) -> SealedBackend:
    """The store's sealing layer, its entry-by-entry path (``opened``) and its bounds reads counted."""
    sealed = store.backend
    assert isinstance(sealed, SealedBackend)
    _spy(sealed, calls, "opened", "log_info")
    return sealed


def _values(msgs: list[dict[str, str]]) -> list[tuple[bytes, str]]:
    return [(m["content"].encode(), "msg:" + m["role"]) for m in msgs]


def test_a_whole_history_opens_in_bulk_without_reading_entries(open_enc: Callable[[], statekeel.Store]) -> None:
    open_enc().session("s1").append(*_msgs(40))
    reader, calls = open_enc(), []
    s = reader.session("s1")  # opening a session reads its log's bounds
    _sealed(reader, calls)
    assert s.history() == _msgs(40) and s.history(last=5) == _msgs(5, 35)
    assert s.history(last=50) == _msgs(40) and s.history(last=1) == _msgs(1, 39)
    assert calls == []  # each first seq known: no bounds asked again, nothing entry by entry
    fresh, calls = open_enc(), []
    sealed = _sealed(fresh, calls)
    assert sealed.read_values(LOG) == _values(_msgs(40))  # a whole history starts at 1: nothing asked
    assert calls == []
    assert sealed.read_values(LOG, limit=3, reverse=True) == _values(_msgs(3, 37))
    assert calls == ["log_info"]  # where the log ends: asked once
    assert sealed.read_values(LOG, limit=3, reverse=True) == _values(_msgs(3, 37)) and calls == ["log_info"]


def test_a_trimmed_history_and_another_writers_appends_are_found_by_asking(
    open_enc: Callable[[], statekeel.Store],
) -> None:
    a, b = open_enc(), open_enc()
    a.session("s1").append(*_msgs(12))
    assert a.session("s1").trim(keep_last=5) == 7
    calls: list[str] = []
    sealed = _sealed(b, calls)
    assert sealed.read_values(LOG) == _values(_msgs(5, 7))  # the guess (seq 1) fails; the bounds say 8
    assert calls == ["log_info"]
    b.session("s1").append(*_msgs(3, 12))  # a's idea of the log's end is now old
    calls = []
    sealed = _sealed(a, calls)
    assert sealed.read_values(LOG, limit=4, reverse=True) == _values(_msgs(4, 11))
    assert calls == ["log_info"]
    assert a.session("s1").history() == _msgs(8, 7) and a.session("s1").history(last=2) == _msgs(2, 13)
    assert calls.count("opened") == 0


def test_damage_is_still_refused_naming_the_entry(open_enc: Callable[[], statekeel.Store]) -> None:
    store = open_enc()
    s = store.session("s1")
    s.append(*_msgs(6))
    raw = store.storage
    stored = raw.read(LOG)
    raw.apply([Rewrite(LOG, 4, stored[2].data, stored[2].codec)])  # entry 3's ciphertext copied over entry 4
    calls: list[str] = []
    _sealed(store, calls)
    with pytest.raises(IntegrityError, match="entry 4 of log"):
        s.history()
    assert calls == ["log_info", "opened"]  # the bulk open failed twice: entry by entry, which names it
    raw.apply([Rewrite(LOG, 4, stored[3].data, stored[3].codec)])
    assert s.history() == _msgs(6)


def test_a_history_under_two_data_key_versions_opens_in_bulk(open_enc: Callable[[], statekeel.Store]) -> None:
    """A rotation not yet re-encrypted: the entries before it under the old data key, after it the new."""
    store = open_enc()
    s = store.session("s1")
    s.append(*_msgs(4))
    assert store.keyring is not None and store.keyring.new_version("session/s1") == 2
    fresh = open_enc()  # knows only the new version as current; reads the old one on demand
    fresh.session("s1").append(*_msgs(3, 4))
    assert {e.data[1:5] for e in store.storage.read(LOG)} == {b"\0\0\0\x01", b"\0\0\0\x02"}
    calls: list[str] = []
    _sealed(fresh, calls)
    assert fresh.session("s1").history() == _msgs(7) and fresh.session("s1").history(last=5) == _msgs(5, 2)
    assert "opened" not in calls


def test_plaintext_planted_in_the_history_is_refused(open_enc: Callable[[], statekeel.Store]) -> None:
    store = open_enc()
    store.session("s1").append(*_msgs(4))
    store.storage.apply([Rewrite(LOG, 2, b"planted", "msg:user")])
    with pytest.raises(IntegrityError, match="stored without encryption"):
        store.session("s1").history()


def test_the_asyncio_twin_opens_in_bulk_and_asks_when_its_guess_is_wrong(store_url: str) -> None:
    async def go() -> None:
        async with statekeel.open_async(store_url, encryption=Encryption(master_key=KEY)) as store:
            s = await store.session("s1")
            await s.append(*_msgs(10))
            assert await s.trim(keep_last=6) == 4
            async with statekeel.open_async(store_url, encryption=Encryption(master_key=KEY)) as other:
                await (await other.session("s1")).append(*_msgs(2, 10))  # the first handle's last seq is now old
            calls: list[str] = []
            lane = store._lane
            if _is_native(store_url):
                assert lane is not None and isinstance(lane.backend, AsyncSealedBackend)
                _spy(lane.backend._sealed, calls, "opened")
                _spy(lane.backend._inner, calls, "log_info")
            assert await s.history(last=3) == _msgs(3, 9)
            assert await s.history() == _msgs(8, 4)
            if _is_native(store_url):
                assert calls == ["log_info"]  # its guess was wrong once; no entry by entry

    asyncio.run(go())
