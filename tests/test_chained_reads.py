"""A tamper-evident store's ``history(last=N)`` in two reads beneath the chain, not three.

``get_many_and_values`` of a chained store reads the session's records together with the heads of
their partitions and of the log's (one ``get_many``), then the log's window (one ``read``): the
head read with the records is the first head read of the log's check (the seqlock of
``chain_reads.against_head``), so a writer that moves the head between the two reads is still
caught, and the read is done again on the head read after it. Sync and asyncio (natively on
PostgreSQL and Redis), plain and encrypted beneath; every backend.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from test_aio_native import _is_native

import statekeel
from statekeel import AsyncStore, Encryption, Integrity, IntegrityError
from statekeel.core import layout
from statekeel.core.chained import ChainedBackend
from statekeel.core.chained_aio import AsyncChainedBackend
from statekeel.protocol import Trim

KEY = base64.b64encode(b"H" * 32).decode()
MODES = ("chain", "chain+encrypted")
READS = ("get", "get_many", "read", "read_values", "log_info")
"""The reads beneath the chain that are counted."""


def _options(mode: str) -> dict[str, Any]:
    options: dict[str, Any] = {"integrity": Integrity(key=KEY)}
    if mode == "chain+encrypted":
        options["encryption"] = Encryption(master_key=base64.b64encode(b"E" * 32).decode())
    return options


def _spy(backend: Any, calls: list[str], *names: str) -> None:
    """Count the calls of ``names`` on ``backend`` that the chain makes (not those one of them makes:
    a backend's default ``get_many`` is one ``get`` per key)."""
    depth = [0]
    for name in names:
        method = getattr(backend, name)

        def counted(*args: Any, _method: Any = method, _name: str = name, **kwargs: Any) -> Any:
            if depth[0] == 0:
                calls.append(_name)
            depth[0] += 1
            try:
                result = _method(*args, **kwargs)
            finally:
                depth[0] -= 1
            return result

        setattr(backend, name, counted)


def _beneath(store: statekeel.Store) -> Any:
    chained = store.backend
    assert isinstance(chained, ChainedBackend)
    return chained.storage


@pytest.mark.parametrize("mode", MODES)
def test_the_newest_messages_are_two_reads_beneath_the_chain(store_url: str, mode: str) -> None:
    with statekeel.open(store_url, **_options(mode)) as store:
        s = store.session("s1")
        s.append(*[f"m{i}" for i in range(10)], state={"n": 1})
        calls: list[str] = []
        _spy(_beneath(store), calls, *READS)
        assert s.history(last=3) == ["m7", "m8", "m9"]
        assert calls == ["get_many", "read"]  # the view with the heads; the window (and the entry before it)
        calls.clear()
        assert s.history(last=30) == [f"m{i}" for i in range(10)] and calls == ["get_many", "read"]
        s.checkpoint("c1")
        s.append("m10")
        s.restore("c1")  # a view now hides m10: the newest N are read through it
        calls.clear()
        assert s.history(last=2) == ["m8", "m9"] and calls[:2] == ["get_many", "read"]
        assert store.verify().ok


@pytest.mark.parametrize("mode", MODES)
def test_a_writer_between_the_two_reads_is_caught_and_the_read_done_again(store_url: str, mode: str) -> None:
    """Another handle appends after the head was read with the records and before the log is read:
    the log then ends past the head this read holds. That disagreement is not believed — the head is
    read again, has moved, and the log is read again against it."""
    with statekeel.open(store_url, **_options(mode)) as store, statekeel.open(store_url, **_options(mode)) as other:
        s = store.session("s1")
        s.append("a", "b")
        beneath, calls = _beneath(store), []
        read = beneath.read

        def read_after_a_write(*args: Any, **kwargs: Any) -> Any:
            if "moved" not in calls:
                calls.append("moved")
                other.session("s1").append("c")
            return read(*args, **kwargs)

        beneath.read = read_after_a_write
        _spy(beneath, calls, "get", "get_many")
        assert s.history(last=2) == ["b", "c"]
        assert calls == ["get_many", "moved", "get"]  # one head read after the log, none before the second read


@pytest.mark.parametrize("mode", MODES)
def test_entries_deleted_beneath_the_api_are_still_refused(store_url: str, mode: str) -> None:
    with statekeel.open(store_url, **_options(mode)) as store:
        s = store.session("s1")
        s.append("a", "b", "c")
        _beneath(store).apply([Trim(layout.history_log("s1"), before=4)])  # past the chain: its head still lists 1..3
        with pytest.raises(IntegrityError, match="missing"):
            s.history(last=2)


@pytest.mark.parametrize("mode", MODES)
def test_asyncio_the_newest_messages_are_two_reads_beneath_the_chain(store_url: str, mode: str) -> None:
    async def main(store: AsyncStore) -> None:
        s = await store.session("s1")
        await s.append(*[f"m{i}" for i in range(10)], state={"n": 1})
        if not _is_native(store_url):  # every other backend reads on the worker, through the sync chain
            assert store._lane is None and await s.history(last=3) == ["m7", "m8", "m9"]
            return
        assert store._lane is not None and isinstance(store._lane.backend, AsyncChainedBackend)
        calls: list[str] = []
        _spy(store._lane.backend._inner, calls, *READS)
        assert await s.history(last=3) == ["m7", "m8", "m9"]
        assert calls == ["get_many", "read"]

    async def go() -> None:
        async with statekeel.open_async(store_url, **_options(mode)) as store:
            await main(store)

    asyncio.run(go())
