"""StatekeelSaver given an AsyncStore: a graph's writes on the asyncio driver, on every backend.

On PostgreSQL and Redis (plain, encrypted, tamper-evident, a tenant's handle) ``aput`` and
``aput_writes`` — what every step of a graph writes — must not hop to the store's worker
thread, and must decide what the sync ``put``/``put_writes`` decide (a fork is refused, a
retried task keeps its first write). Every other backend keeps the worker. LangGraph's own
conformance suite runs on such a saver too (test_langgraph_conformance.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import statekeel
from statekeel import AsyncStore, Encryption, Integrity
from statekeel.integrations.langgraph import CheckpointForkError, StatekeelSaver

from .graphs import chat_graph, user_turn
from .hops import count_worker_calls

NATIVE = ("postgresql", "redis")
CONFIG: dict[str, Any] = {"configurable": {"thread_id": "chat"}}


def _run(url: str, main: Callable[[AsyncStore], Awaitable[None]], *, tenant: str | None = None, **options: Any) -> None:
    async def go() -> None:
        async with statekeel.open_async(url, **options) as store:
            await main(store if tenant is None else store.tenant(tenant))

    asyncio.run(go())


@pytest.mark.parametrize("mode", ["plain", "encrypted", "chain", "tenant"])
def test_a_graphs_writes_make_no_worker_hop_on_native_drivers(store_url: str, mode: str) -> None:
    """Five turns of the reference chat graph through ``ainvoke``: on PostgreSQL and Redis every
    ``aput``/``aput_writes``/``aget_tuple`` runs on the loop; the sync saver on the same store reads
    back the same thread."""
    options: dict[str, Any] = {}
    if mode == "encrypted":
        options["encryption"] = Encryption(master_key=b"k" * 32)
    if mode == "chain":
        options["integrity"] = Integrity(key=b"c" * 32)

    async def main(store: AsyncStore) -> None:
        saver = StatekeelSaver(store)
        graph = chat_graph(saver)
        await graph.ainvoke(user_turn(0), CONFIG)  # keys, pools, the thread's first records
        calls = count_worker_calls(store)
        for i in range(1, 5):
            await graph.ainvoke(user_turn(i), CONFIG)
        if store_url.startswith(NATIVE):  # encrypted: at most the first lookup of a partition's data key
            assert [c for c in calls if "Keyring.fetch" not in c] == [], calls
        else:
            assert [c for c in calls if "put" in c], "the other backends keep the worker for writes"
        state = await graph.aget_state(CONFIG)
        ids = [m.id for m in state.values["messages"]]
        assert ids == [x for i in range(5) for x in (f"user-{i}", f"ai-{2 * i + 1}")] and state.values["turns"] == 5
        sync = StatekeelSaver(store.sync)
        try:
            again = await asyncio.to_thread(lambda: chat_graph(sync).get_state(CONFIG))
            tuples = await asyncio.to_thread(lambda: list(sync.list(CONFIG)))
        finally:
            sync.close()
        assert again.values == state.values and len(tuples) == 15  # 3 checkpoints a turn
        saver.close()  # the store's worker is left running: the store owns it
        assert not store._worker.closed

    _run(store_url, main, tenant="acme" if mode == "tenant" else None, **options)


def test_a_fork_is_refused_and_a_retried_task_keeps_its_first_write(store_url: str) -> None:
    """The steps the sync saver takes, decided on the loop: a put whose parent another saver moved
    past raises CheckpointForkError (nothing written); a retried task's writes keep the first."""

    async def main(store: AsyncStore) -> None:
        first, second = StatekeelSaver(store), StatekeelSaver(store)
        await chat_graph(first).ainvoke(user_turn(0), CONFIG)
        loaded = await second.aget_tuple(CONFIG)
        assert loaded is not None
        await chat_graph(first).ainvoke(user_turn(1), CONFIG)  # moves the head past what second read
        stored = [t.config["configurable"]["checkpoint_id"] async for t in first.alist(CONFIG)]
        checkpoint = {**loaded.checkpoint, "id": "1f0ffff0-0000-6000-8000-000000000000"}
        with pytest.raises(CheckpointForkError, match="moved on"):
            await second.aput(loaded.config, checkpoint, {"source": "loop", "step": 9}, {})  # type: ignore[typeddict-item]
        assert [t.config["configurable"]["checkpoint_id"] async for t in first.alist(CONFIG)] == stored
        head = stored[0]
        config = {"configurable": {"thread_id": "chat", "checkpoint_ns": "", "checkpoint_id": head}}
        await first.aput_writes(config, [("messages", "first"), ("__error__", "e1")], "task-1")  # type: ignore[arg-type]
        await first.aput_writes(config, [("messages", "again"), ("__error__", "e2")], "task-1")  # type: ignore[arg-type]
        tup = await first.aget_tuple(config)
        assert tup is not None and {(c, v) for t, c, v in tup.pending_writes if t == "task-1"} == {
            ("messages", "first"), ("__error__", "e2")}

    _run(store_url, main)


def test_concurrent_threads_on_one_saver(store_url: str) -> None:
    """Eight threads at once through one saver: each its own history, in order."""

    async def main(store: AsyncStore) -> None:
        graph = chat_graph(StatekeelSaver(store))

        async def turns(n: int) -> None:
            for i in range(3):
                await graph.ainvoke(user_turn(i), {"configurable": {"thread_id": f"t{n}"}})

        await asyncio.gather(*(turns(n) for n in range(8)))
        for n in range(8):
            state = await graph.aget_state({"configurable": {"thread_id": f"t{n}"}})
            assert [m.id for m in state.values["messages"]] == ["user-0", "ai-1", "user-1", "ai-3", "user-2", "ai-5"]

    _run(store_url, main)


@pytest.mark.parametrize("reuse", [True, False])
def test_a_fresh_saver_reads_a_thread_and_its_delta_chains_on_the_loop(store_url: str, reuse: bool) -> None:
    """A saver that did not write the thread (a restart, another process), or keeps no values
    (``reuse_values=False``), reads it with ``aget_tuple``: the checkpoint, the channel values with
    their delta chains and segments (a writer tuned to store deltas from the first byte), and the
    pending writes — on PostgreSQL and Redis with no worker hop; the tuple is the sync saver's."""

    async def main(store: AsyncStore) -> None:
        graph = chat_graph(StatekeelSaver(store, delta_min_bytes=1, segment=2))
        for i in range(12):
            await graph.ainvoke(user_turn(i), CONFIG)
        fresh = StatekeelSaver(store, reuse_values=reuse)
        calls = count_worker_calls(store)
        tup = await fresh.aget_tuple(CONFIG)
        again = await fresh.aget_tuple(CONFIG)
        if store_url.startswith(NATIVE):
            assert calls == [], calls
        assert tup is not None and again is not None and again.checkpoint == tup.checkpoint
        assert [m.id for m in tup.checkpoint["channel_values"]["messages"]] == [
            x for i in range(12) for x in (f"user-{i}", f"ai-{2 * i + 1}")]
        sync = StatekeelSaver(store.sync)
        try:
            expected = await asyncio.to_thread(sync.get_tuple, CONFIG)
            older = await asyncio.to_thread(lambda: list(sync.list(CONFIG))[7])
        finally:
            sync.close()
        assert expected is not None and expected.checkpoint == tup.checkpoint
        assert expected.pending_writes == tup.pending_writes and expected.metadata == tup.metadata
        named = await fresh.aget_tuple(older.config)  # an older checkpoint, by id: a chain read from its root
        assert named is not None and named.checkpoint == older.checkpoint and named.pending_writes == older.pending_writes

    _run(store_url, main)


def test_alist_of_a_thread_runs_on_the_loop_and_lists_what_list_does(store_url: str) -> None:
    """``alist`` of one thread — all, ``limit``, ``before``, ``filter``, one named checkpoint — on
    PostgreSQL and Redis with no worker hop, the same tuples as the sync ``list``; every thread's
    listing (no config) walks the thread index on the worker."""

    async def main(store: AsyncStore) -> None:
        saver = StatekeelSaver(store)
        graph = chat_graph(saver)
        for i in range(4):
            await graph.ainvoke(user_turn(i), CONFIG)
        await graph.ainvoke(user_turn(9), {"configurable": {"thread_id": "other"}})
        sync = StatekeelSaver(store.sync)
        everything = await asyncio.to_thread(lambda: list(sync.list(CONFIG)))
        cases: list[dict[str, Any]] = [{}, {"limit": 5}, {"before": everything[3].config, "limit": 4},
                                       {"filter": {"source": "loop"}}]
        calls = count_worker_calls(store)
        try:
            for case in cases:
                mine = [t async for t in saver.alist(CONFIG, **case)]
                theirs = await asyncio.to_thread(lambda case=case: list(sync.list(CONFIG, **case)))
                assert [(t.config, t.checkpoint, t.metadata, t.pending_writes) for t in mine] == [
                    (t.config, t.checkpoint, t.metadata, t.pending_writes) for t in theirs], case
                assert mine, case
            named = [t async for t in saver.alist(everything[5].config)]
            assert [t.config for t in named] == [everything[5].config]
            if store_url.startswith(NATIVE):
                assert calls == [], calls
            calls.clear()
            both = {t.config["configurable"]["thread_id"] async for t in saver.alist(None)}
            assert both == {"chat", "other"} and calls  # every thread: on the worker
        finally:
            sync.close()

    _run(store_url, main)
