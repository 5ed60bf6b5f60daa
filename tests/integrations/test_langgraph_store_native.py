"""StatekeelStore (LangGraph's BaseStore) given an AsyncStore: ``abatch`` on the asyncio driver.

On PostgreSQL and Redis (plain, encrypted, tamper-evident, a tenant's handle) a graph node's
``aput``/``aget``/``asearch``/``alist_namespaces``/``adelete`` must not hop to the store's worker
thread once the search index is built, and must answer as the sync store does; the semantic
index (embedding on writes, ranked searches) and the first search of an unindexed store keep
the worker. Every other backend keeps the worker. LangGraph's own store tests run on this path
too (tests/integrations/test_langgraph_ported_store.py, ``async-store``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import statekeel
from statekeel import AsyncStore, Encryption, Integrity
from statekeel.integrations.langgraph import StatekeelStore

from .hops import count_worker_calls

NATIVE = ("postgresql", "redis")


def _options(mode: str) -> dict[str, Any]:
    if mode == "encrypted":
        return {"encryption": Encryption(master_key=b"k" * 32)}
    if mode == "chain":
        return {"integrity": Integrity(key=b"c" * 32)}
    return {}


async def _calls(lg: StatekeelStore) -> list[Any]:
    """A memory-keeping node's calls, and what each answered (items as plain dicts)."""
    out: list[Any] = []
    await lg.aput(("users", "ann", "prefs"), "lang", {"v": "fr", "n": 1}, ttl=60)
    await lg.aput(("users", "ann", "prefs"), "tz", {"v": "CET", "n": 2})
    await lg.aput(("users", "bob", "prefs"), "lang", {"v": "en", "n": 3})
    got = await lg.aget(("users", "ann", "prefs"), "lang")
    out.append(None if got is None else (got.namespace, got.key, got.value))
    out.append(await lg.aget(("users", "ann", "prefs"), "missing"))
    for kwargs in ({}, {"filter": {"v": "fr"}}, {"limit": 1, "offset": 1}):
        found = await lg.asearch(("users",), **kwargs)
        out.append([(i.namespace, i.key, i.value) for i in found])
    out.append(await lg.alist_namespaces(prefix=("users",)))
    out.append(await lg.alist_namespaces(max_depth=2))
    await lg.adelete(("users", "bob", "prefs"), "lang")
    out.append([(i.namespace, i.key) for i in await lg.asearch(("users",))])
    return out


@pytest.mark.parametrize("mode", ["plain", "encrypted", "chain", "tenant"])
def test_a_nodes_store_calls_make_no_worker_hop_on_native_drivers(store_url: str, mode: str) -> None:
    async def go() -> None:
        async with statekeel.open_async(store_url, **_options(mode)) as opened:
            store: AsyncStore = opened.tenant("acme") if mode == "tenant" else opened
            lg = StatekeelStore(store)
            await asyncio.to_thread(lg.build_index)
            calls = count_worker_calls(store)
            answers = await _calls(lg)
            if store_url.startswith(NATIVE):  # encrypted: only the first lookup of a partition's data key
                fetched = [c for c in calls if "Keyring.fetch" in c]
                assert [c for c in calls if c not in fetched] == [] and len(fetched) == len(set(fetched)), calls
                assert (fetched == []) == (mode != "encrypted"), calls
            else:
                assert calls, "the other backends keep the worker"
            assert answers[0] == (("users", "ann", "prefs"), "lang", {"v": "fr", "n": 1}) and answers[1] is None
            assert [k for _, k, _ in answers[2]] == ["lang", "tz", "lang"]  # newest first
            assert answers[3] == [(("users", "ann", "prefs"), "lang", {"v": "fr", "n": 1})]
            assert answers[-1] == [(("users", "ann", "prefs"), "tz"), (("users", "ann", "prefs"), "lang")]
            synced = StatekeelStore(store.sync)  # the sync store reads what the native calls wrote
            try:
                item = await asyncio.to_thread(synced.get, ("users", "ann", "prefs"), "tz")
                assert item is not None and item.value == {"v": "CET", "n": 2}
                assert await asyncio.to_thread(synced.search, ("users",)) == await lg.asearch(("users",))
            finally:
                synced.close()
            lg.close()  # an AsyncStore's worker is the store's: still running
            assert await store.call(lambda st: st.app.get("nothing")) is None

    asyncio.run(go())


def test_native_and_sync_stores_answer_alike(store_url: str) -> None:
    """The same calls on a fresh store each: through ``abatch`` natively and through ``batch``."""

    async def native() -> list[Any]:
        async with statekeel.open_async(store_url) as store:
            lg = StatekeelStore(store)
            await asyncio.to_thread(lg.build_index)
            return await _calls(lg)

    first = asyncio.run(native())
    with statekeel.open(store_url) as plain:
        for key in [r.key for r in plain.backend.scan("lgstore")]:
            plain.backend.apply([statekeel.protocol.Delete(key)])
        lg = StatekeelStore(plain)
        try:
            second = asyncio.run(_calls(lg))
        finally:
            lg.close()
    assert first == second


def test_the_semantic_index_and_an_unbuilt_index_keep_the_worker(store_url: str) -> None:
    """``index=`` embeds on writes and ranks searches with a query on the worker; a store's first
    search builds the index by write time there too — then searches run natively."""

    async def go() -> None:
        async with statekeel.open_async(store_url) as store:
            embed = lambda texts: [[1.0, float(len(t) % 7)] for t in texts]  # noqa: E731
            semantic = StatekeelStore(store, index={"dims": 2, "embed": embed})
            calls = count_worker_calls(store)
            await semantic.aput(("docs",), "a", {"text": "refund policy"})
            assert calls, "an embedding write runs on the worker"
            found = await semantic.asearch(("docs",), query="refund")
            assert [i.key for i in found] == ["a"] and found[0].score is not None
            plain = StatekeelStore(store)
            plain._indexed = False  # as a new process's first search
            calls.clear()
            assert [i.key for i in await plain.asearch(("docs",))] == ["a"]
            assert calls, "the first search (index not known built) runs on the worker"
            calls.clear()
            assert [i.key for i in await plain.asearch(("docs",))] == ["a"]
            assert (calls == []) == store_url.startswith(NATIVE), calls

    asyncio.run(go())
