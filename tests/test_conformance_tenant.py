"""The asyncio, session and state conformance suites again, through tenant handles.

A tenant's handle (``store.tenant(...)``) puts the tenant view (backends/tenant.py) between the
features and the backend — and under the asyncio API its twin (backends/tenant_aio.py) on the
native drivers, on PostgreSQL over the tenant's own pool (row-level security). These suites must
pass unchanged through both. Every store a test opens in this process is a tenant's handle:
``statekeel.open(url)`` gives ``open(url).tenant("conf")`` and ``statekeel.open_async(url)`` an
``AsyncStore`` of that handle; the stores beneath are closed when the test ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import statekeel
from statekeel.aio import AsyncStore
from statekeel.aio._store import AsyncStoreOpener
from statekeel.aio._worker import check_threads
from statekeel.testing.conformance.test_async import *  # noqa: F403
from statekeel.testing.conformance.test_async_reads import *  # noqa: F403
from statekeel.testing.conformance.test_sessions import *  # noqa: F403
from statekeel.testing.conformance.test_state import *  # noqa: F403

TENANT = "conf"


@pytest.fixture(autouse=True)
def _tenanted(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    plain_open = statekeel.open
    opened: list[statekeel.Store] = []

    def open_(url: str | None = None, **options: Any) -> statekeel.Store:
        whole = plain_open(url, **options)
        opened.append(whole)
        return whole.tenant(TENANT)

    class TenantOpener(AsyncStoreOpener):
        async def _open(self) -> AsyncStore:
            handle = await asyncio.to_thread(open_, self._url, **self._options)
            return AsyncStore(handle, workers=self._workers)

    def open_async(url: str | None = None, *, workers: int = 1, **options: Any) -> AsyncStoreOpener:
        return TenantOpener(url, check_threads(workers), options)

    monkeypatch.setattr(statekeel, "open", open_)
    monkeypatch.setattr(statekeel, "open_async", open_async)
    try:
        yield
    finally:
        for whole in opened:
            whole.close()


def test_the_stores_here_are_tenant_handles(store: statekeel.Store, store_url: str) -> None:
    """What this module runs on: the tenant's handle (its data under the tenant's prefix, not
    the store's), and asyncio handles on the tenant's asyncio view where the store has a lane."""
    from statekeel.backends.tenant_aio import AsyncTenantBackend
    from statekeel.store import open as whole_open

    store.session("s").append("words", state={"k": 1})
    assert store.url.startswith(f"tenant {TENANT!r}")
    with pytest.raises(statekeel.UsageError):
        store.tenant("other")  # tenants do not nest: this is a tenant's handle
    if not store_url.startswith("memory"):  # (a memory store is not shared by two opens)
        with whole_open(store_url) as whole:
            assert whole.find_session("s") is None and whole.tenant(TENANT).find_session("s") is not None

    async def main() -> None:
        async with statekeel.open_async(store_url) as astore:
            laned = store_url.startswith(("postgresql", "redis", "sqlite", "file"))
            assert isinstance(getattr(astore._lane, "backend", None), AsyncTenantBackend) == laned
            s = await astore.session("s")
            assert await s.history() == ["words"]

    asyncio.run(main())


def test_async_tenants_are_separate_and_share_the_worker(store_url: str) -> None:
    """The suite's test of that name opens tenants on the store (tests/test_conformance.py runs
    it); here every store is already a tenant's handle, which opens no tenant: tenants do not nest."""

    async def main() -> None:
        async with statekeel.open_async(store_url) as astore:
            with pytest.raises(statekeel.UsageError, match="do not nest"):
                astore.tenant("acme")
            s = await astore.session("s")  # the handle still works after the refusal
            await s.append("kept")
            assert await s.history() == ["kept"]

    asyncio.run(main())
