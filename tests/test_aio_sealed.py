"""Encrypted stores on the native asyncio drivers (PostgreSQL, Redis): sealed and opened on the
event loop (core/sealed_aio.py), no thread hop once a partition's data key is known.

Run on every backend given to ``--statekeel-backends``: on ``postgres`` and ``redis`` the
encrypted store's hot calls run natively; every other backend keeps the worker thread for an
encrypted store, as before. Real servers; nothing stands in for a database.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

from test_aio_native import _hot_paths, _is_native, _worker_threads, conversations

import statekeel
from statekeel import AsyncStore, Encryption, IntegrityError, KeyUnavailableError
from statekeel.core import layout
from statekeel.core.sealed_aio import AsyncSealedBackend
from statekeel.protocol import Append, Rewrite

KEY = base64.b64encode(b"S" * 32).decode()


def _enc(key: str = KEY) -> Encryption:
    return Encryption(master_key=key)


def _run(url: str, main: Callable[[AsyncStore], Awaitable[None]], **options: Any) -> None:
    async def go() -> None:
        async with statekeel.open_async(url, encryption=_enc(), **options) as store:
            await main(store)

    asyncio.run(go())


def _count_worker_calls(store: AsyncStore) -> list[str]:
    """Every call the store's worker runs from now on, by name (the worker itself is unchanged)."""
    calls: list[str] = []
    worker = store._worker
    submit = worker._submit

    async def counted(fn: Callable[[], Any], tracked: bool) -> Any:
        calls.append(getattr(fn, "__qualname__", repr(fn)))
        return await submit(fn, tracked)

    worker._submit = counted  # type: ignore[method-assign]
    return calls


def test_encrypted_hot_paths_run_on_the_event_loop(store_url: str) -> None:
    """Session open, append, batch, heartbeat, history, count, info, state and app calls of an
    encrypted store: on PostgreSQL and Redis sealed and opened on the loop (the worker runs only the
    first lookup of each partition's data key); every other backend keeps the worker."""

    async def main(store: AsyncStore) -> None:
        if not _is_native(store_url):
            assert store._lane is None
            await _hot_paths(store)
            return
        assert store._lane is not None and isinstance(store._lane.backend, AsyncSealedBackend)
        calls = _count_worker_calls(store)
        await _hot_paths(store)
        assert calls and all("fetch" in c for c in calls)  # only data keys: created on first use
        calls.clear()
        s = await store.session("hot")
        for turn in range(5):
            await s.append({"role": "user", "content": f"q{turn}"}, {"role": "assistant", "content": "a"},
                           state={"turn": turn})  # fmt: skip
        assert len(await s.history()) == 12 and await s.state.get("turn") == 4
        assert await store.app.get("k") == {"v": 2} and await s.count() == 12
        assert calls == []  # every key known: not one hop

    _run(store_url, main)


def test_what_the_loop_seals_the_sync_api_opens_and_storage_holds_sealed(store_url: str) -> None:
    """Values written natively are stored encrypted (no plaintext, every codec ``+aesgcm``) and read
    back by the sync API with the key; what the sync API writes the loop reads."""

    async def write(store: AsyncStore) -> None:
        s = await store.session("mixed", user="u-7")
        await s.append({"role": "user", "content": "my secret plan"}, state={"plan": "hidden words"})
        await store.app.put("cfg", {"mode": "quiet words"})

    _run(store_url, write)
    with statekeel.open(store_url, encryption=_enc()) as sync:
        s = sync.session("mixed")
        assert s.history() == [{"role": "user", "content": "my secret plan"}]
        assert s.state.get("plan") == "hidden words" and sync.app.get("cfg") == {"mode": "quiet words"}
        stored = sync.storage
        entries = stored.read(layout.history_log("mixed"))
        records = [r for r in stored.scan("session/mixed/") if r is not None]
        assert entries and all(e.codec.endswith("+aesgcm") and b"secret" not in e.data for e in entries)
        assert records and all(r.codec.endswith("+aesgcm") and b"hidden" not in r.data for r in records)
        s.append("from sync", state={"plan": "changed"})

    async def read(store: AsyncStore) -> None:
        s = await store.session("mixed")
        assert (await s.history(last=1)) == ["from sync"] and await s.state.get("plan") == "changed"

    _run(store_url, read)


def test_a_position_moved_by_another_writer_is_sealed_again(store_url: str) -> None:
    """The loop's handle seals the next append for the seq it last saw and a state put for the
    version it last saw; another process's writes in between move both. The batch is refused
    (nothing written), sealed again for the new positions, and every value opens where it landed."""

    def _other_writer() -> None:
        with statekeel.open(store_url, encryption=_enc()) as other:
            other.session("shared").append("b", "c", state={"n": 2})

    async def main(store: AsyncStore) -> None:
        s = await store.session("shared")
        await s.append("a", state={"n": 1})
        await asyncio.to_thread(_other_writer)  # another process, in effect: a handle of its own
        positions = store._store.backend._next  # the seq this handle would seal the next entry for
        log = layout.history_log("shared")
        assert positions[log] == 2  # stale: 2 and 3 were taken meanwhile
        await s.append("d", state={"n": 3})
        assert positions[log] == 5
        assert await s.history() == ["a", "b", "c", "d"] and await s.state.get("n") == 3
        assert (await s.state.require("n")).version == 3

    _run(store_url, main)
    with statekeel.open(store_url, encryption=_enc()) as sync:
        assert sync.session("shared").history() == ["a", "b", "c", "d"]


def test_concurrent_encrypted_conversations(store_url: str) -> None:
    """32 conversations and a shared counter (test_aio_native's), encrypted: every value sealed to
    its own position while the positions move under 32 coroutines at once."""
    _run(store_url, conversations)


def test_the_loop_refuses_planted_and_moved_values(store_url: str) -> None:
    """What the sync API refuses the loop refuses: an entry stored without encryption (planted by
    someone without the key) and a ciphertext moved to another seq are IntegrityError, not data."""

    async def write(store: AsyncStore) -> None:
        s = await store.session("target")
        await s.append("one", "two")

    _run(store_url, write)
    log = layout.history_log("target")
    with statekeel.open(store_url, encryption=_enc()) as sync:
        first, second = sync.storage.read(log)
        sync.storage.apply([Rewrite(log, 1, second.data, second.codec)])  # "two" sealed for seq 2, put at 1

    async def moved(store: AsyncStore) -> None:
        s = await store.session("target")
        for read in (s.history, lambda: s.history(last=2)):
            try:
                await read()
                raise AssertionError("a ciphertext moved to another seq must not open")
            except IntegrityError as err:
                assert "entry 1" in str(err)

    _run(store_url, moved)
    with statekeel.open(store_url, encryption=_enc()) as sync:
        sync.storage.apply([Rewrite(log, 1, first.data, first.codec), Append(log, ((b'"planted"', "json"),))])

    async def planted(store: AsyncStore) -> None:
        s = await store.session("target")
        try:
            await s.history()
            raise AssertionError("a plaintext entry in an encrypted store must not be returned")
        except IntegrityError as err:
            assert "without encryption" in str(err)
        try:
            await s.history(last=1)
            raise AssertionError("the planted entry is refused read alone too")
        except IntegrityError:
            pass

    _run(store_url, planted)


def test_keys_the_keyring_no_longer_holds_are_read_on_the_worker(store_url: str) -> None:
    """The keyring keeps a partition's keys 30 s: past that (or for a partition never seen), the
    next seal or open reads the keystore on the worker thread, never on the event loop, and goes on."""
    if not _is_native(store_url):  # the worker runs every call there: nothing to look up elsewhere
        _run(store_url, _hot_paths)
        return

    async def main(store: AsyncStore) -> None:
        s = await store.session("k")
        await s.append("first")
        calls = _count_worker_calls(store)
        keyring = store._store.keyring
        assert keyring is not None
        keyring._cache.clear()  # as 30 s later
        assert await s.history() == ["first"]  # opening: the key read on the worker
        keyring._cache.clear()
        await s.append("second")  # sealing: the same
        assert await s.history() == ["first", "second"]
        assert len(calls) == 2 and all("fetch" in c for c in calls) and _worker_threads(store) == 1

    _run(store_url, main)


def test_a_store_opened_with_the_wrong_key_fails_on_the_loop_as_on_the_worker(store_url: str) -> None:
    """The key a store was written with is required whichever path reads it."""
    _run(store_url, _hot_paths)
    other = base64.b64encode(b"T" * 32).decode()

    async def go() -> None:
        try:
            async with statekeel.open_async(store_url, encryption=_enc(other)) as store:
                await (await store.session("hot")).history()
        except KeyUnavailableError:
            return
        raise AssertionError("a store encrypted under another key must refuse")

    asyncio.run(go())
