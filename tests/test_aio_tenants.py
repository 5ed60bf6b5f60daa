"""Tenant handles on the asyncio API: on PostgreSQL and Redis their hot paths run on the event
loop like the store's (backends/tenant_aio.py), plain, encrypted and tamper-evident; on SQLite
and files their writes are committed together with the store's and the other tenants'.

Run on every backend given to ``--statekeel-backends`` (real servers; nothing stands in for a
database). Isolation is checked both ways: through the sync API's tenant view and through the
store itself, which sees nothing of a tenant's data under the names the tenant used.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from test_aio_native import GROUPED, _hot_paths, _is_native, _worker_threads
from test_aio_sealed import _count_worker_calls

import statekeel
from statekeel import AsyncStore, Encryption, Integrity, IntegrityError, UsageError
from statekeel.backends.tenant_aio import AsyncTenantBackend
from statekeel.core import layout
from statekeel.core.chained_aio import AsyncChainedBackend
from statekeel.core.sealed_aio import AsyncSealedBackend
from statekeel.protocol import Rewrite

KEY = base64.b64encode(b"T" * 32).decode()
MODES: dict[str, dict[str, Any]] = {
    "plain": {},
    "encrypted": {"encryption": Encryption(master_key=KEY)},
    "chain": {"integrity": Integrity(key=KEY)},
}


def _run(url: str, main: Callable[[AsyncStore], Awaitable[None]], **options: Any) -> None:
    async def go() -> None:
        async with statekeel.open_async(url, **options) as store:
            await main(store)

    asyncio.run(go())


def _expected_lane(url: str, tenant: AsyncStore, mode: str) -> None:
    """What runs a tenant's hot paths: its view on the driver (PostgreSQL, Redis; under the
    sealing or the chain), group commit (plain SQLite, files), or the worker."""
    lane = tenant._lane
    if _is_native(url):
        assert lane is not None and lane.reads
        wrapper = {"plain": AsyncTenantBackend, "encrypted": AsyncSealedBackend, "chain": AsyncChainedBackend}[mode]
        assert type(lane.backend) is wrapper
    elif url.startswith(GROUPED) and mode == "plain":
        assert lane is not None and not lane.reads and type(lane.backend) is AsyncTenantBackend
    else:
        assert lane is None


@pytest.mark.parametrize("mode", list(MODES))
def test_a_tenants_hot_paths_run_where_the_stores_do(store_url: str, mode: str) -> None:
    """Session open, append, batch, heartbeat, history, count, info, state and app calls through
    ``store.tenant(...)``: no worker hop on PostgreSQL and Redis once a partition's data key is
    known (encrypted: read on the worker once each), and what they write belongs to the tenant only."""

    async def main(store: AsyncStore) -> None:
        acme = store.tenant("acme")
        _expected_lane(store_url, acme, mode)
        calls = _count_worker_calls(store)
        await _hot_paths(acme)
        if _is_native(store_url):
            assert all("fetch" in c for c in calls) and (mode == "encrypted" or calls == []), calls
            calls.clear()
            s = await acme.session("hot")
            for turn in range(3):
                await s.append({"role": "user", "content": f"q{turn}"}, state={"turn": turn})
            assert len(await s.history()) == 5 and await s.state.get("turn") == 2 and await s.count() == 5
            assert await acme.app.get("k") == {"v": 2}
            assert calls == []  # every key known: not one hop
            assert _worker_threads(store) == (1 if mode == "encrypted" else 0)
        # the store and another tenant see none of it under the same names
        assert await store.find_session("hot") is None and await store.app.get("k") is None
        other = store.tenant("other")
        assert await other.find_session("hot") is None and await other.app.get("k") is None
        assert [i.id for i in await acme.sessions()] == ["hot"]

    _run(store_url, main, **MODES[mode])
    with statekeel.open(store_url, **MODES[mode]) as sync:  # the sync view reads what the loop wrote
        acme = sync.tenant("acme")
        s = acme.session("hot")
        assert len(s.history()) == (5 if _is_native(store_url) else 2) and acme.app.get("k") == {"v": 2}
        assert sync.find_session("hot") is None and sync.tenant("other").find_session("hot") is None
        if mode == "chain":
            report = sync.verify()
            assert report.ok, report


def test_concurrent_tenants_with_the_same_names_stay_apart(store_url: str) -> None:
    """4 tenants × 8 conversations at once, every tenant using the same session ids and app key:
    each history holds exactly its own tenant's messages, in order, and each tenant's counter
    counts its own increments only."""
    tenants, turns = ("t0", "t1", "t2", "t3"), 4

    async def conversation(store: AsyncStore, t: str, n: int) -> None:
        view = store.tenant(t)  # a handler opens the view per request
        s = await view.session(f"c-{n}")
        for turn in range(turns):
            await s.append({"t": t, "n": n, "turn": turn}, state={"turn": turn})
            await view.app.update("turns", lambda x: x + 1, default=0)

    async def main(store: AsyncStore) -> None:
        await asyncio.gather(*(conversation(store, t, n) for t in tenants for n in range(8)))
        for t in tenants:
            view = store.tenant(t)
            for n in range(8):
                s = await view.session(f"c-{n}")
                assert await s.history() == [{"t": t, "n": n, "turn": k} for k in range(turns)]
                assert await s.state.get("turn") == turns - 1
            assert await view.app.get("turns") == 8 * turns
        assert await store.app.get("turns") is None and await store.find_session("c-0") is None
        if _is_native(store_url):
            assert _worker_threads(store) == 0

    _run(store_url, main)


def test_tenant_views_share_the_stores_drivers_and_close_with_it(store_url: str) -> None:
    """A view opened per request reuses the driver made for its tenant (on PostgreSQL the
    tenant's own pool, on Redis the store's client); closing a view leaves the store and the
    other views working; closing the store closes them all (a call then says the store is closed)."""

    async def main() -> None:
        store = await statekeel.open_async(store_url)
        first, again = store.tenant("acme"), store.tenant("acme")
        made = dict(store._drivers._made)
        if _is_native(store_url):
            assert first._lane is not None and again._lane is not None
            below = [b._inner for b in (first._lane.backend, again._lane.backend)]  # type: ignore[attr-defined]
            assert below[0] is below[1]
            # PostgreSQL: the store's driver and acme's own; Redis: the store's only
            assert len(made) == (2 if store_url.startswith("postgresql") else 1)
        await (await first.session("s")).append("one")
        await first.aclose()  # a view does not close what the store owns
        await (await again.session("s")).append("two")
        assert await (await store.tenant("acme").session("s")).history() == ["one", "two"]
        await store.aclose()
        with pytest.raises(UsageError, match="closed"):
            await again.session("s")
        late = store.tenant("late")  # a view opened after the store closed: its calls say so too
        assert late._lane is None
        with pytest.raises(UsageError, match="closed"):
            await late.session("s")
        assert store._drivers._made == {}

    asyncio.run(main())


def test_a_tenants_tampered_entry_is_refused_on_the_loop(store_url: str) -> None:
    """Tamper-evident tenants: an entry of acme's history edited in storage is refused by the
    tenant's asyncio view as by the sync one; the other tenant's history still reads."""
    integrity = Integrity(key=KEY)

    async def write(store: AsyncStore) -> None:
        for t in ("acme", "other"):
            s = await store.tenant(t).session("s")
            await s.append("first", "second")

    _run(store_url, write, integrity=integrity)
    with statekeel.open(store_url, integrity=integrity) as raw:  # its storage: the bytes under acme's prefix
        log = "acme~" + layout.history_log("s")
        entry = raw.storage.read(log)[0]
        assert b"first" in entry.data
        raw.storage.apply([Rewrite(log, entry.seq, entry.data.replace(b"first", b"FIRST"), entry.codec)])

    async def read(store: AsyncStore) -> None:
        with pytest.raises(IntegrityError):
            await (await store.tenant("acme").session("s")).history()
        assert await (await store.tenant("other").session("s")).history() == ["first", "second"]

    _run(store_url, read, integrity=integrity)


def test_a_sync_tenant_handle_wrapped_in_an_asyncstore_runs_natively_too(store_url: str) -> None:
    """``AsyncStore(store.tenant("acme"))``: its own worker and drivers (closed with it), the
    tenant's view on them; the store it came from is still open and reads what it wrote."""
    with statekeel.open(store_url) as store:

        async def main() -> None:
            async with AsyncStore(store.tenant("acme")) as acme:
                _expected_lane(store_url, acme, "plain")
                s = await acme.session("wrapped")
                await s.append("hi", state={"k": 1})
                assert await s.history() == ["hi"] and await s.state.get("k") == 1
                if _is_native(store_url):
                    assert _worker_threads(acme) == 0

        asyncio.run(main())
        assert store.tenant("acme").session("wrapped").history() == ["hi"]
        assert store.find_session("wrapped") is None
